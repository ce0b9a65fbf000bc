"""Real-time: the durable event log, the event bus (memory or Redis) and the WebSocket hub."""
