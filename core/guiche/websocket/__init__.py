"""The WebSocket edge: `/ws` (authentication, commands, presence) and the per-process hub
that fans the event bus out to the sockets allowed to see each event."""
