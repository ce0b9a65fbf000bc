"""Real-time: the durable event log (`events`) and the event bus (memory or Redis)."""
