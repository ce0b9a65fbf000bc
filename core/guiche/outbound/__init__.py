"""Outbound messages: the outbox, the send task, its sweeper, and stored media.

The API (REST or WebSocket) calls `create_outbound`, which stores the message as
`pending` with its outbox row and event in one transaction and enqueues
`core.send_message` with only the message id. The task claims the outbox row under a
lease, calls the channel adapter and settles the row (`sent` or `failed`) or schedules
a retry; `core.sweep_outbox` re-enqueues whatever a lost kick or a dead worker left.
"""
