"""Core's own background tasks, registered beside plugin tasks as `core.<name>`.

Add a core task here; `TaskQueue.for_services` puts these on every broker (web, worker,
scheduler) so a web process can kick them and the scheduler can time them.
"""

from __future__ import annotations

from guiche.specs import TaskSpec

PREFIX = "core"


def core_tasks() -> dict[str, TaskSpec]:
    """Qualified name → spec. Imported lazily: the task modules need most of core."""
    from guiche.conversations.tasks import CONVERSATION_TASKS
    from guiche.inbound.early_statuses import purge_early_statuses
    from guiche.inbound.key_retention import purge_message_keys
    from guiche.outbound.sender import send_message
    from guiche.outbound.sweeper import (
        media_retention,
        purge_idempotency_keys,
        purge_provider_calls,
        sweep_outbox,
    )

    specs = [
        TaskSpec("send_message", send_message),
        TaskSpec("sweep_outbox", sweep_outbox, schedule=({"interval": 30},)),
        TaskSpec("media_retention", media_retention, schedule=({"cron": "17 3 * * *"},)),
        TaskSpec(
            "purge_idempotency_keys", purge_idempotency_keys, schedule=({"cron": "47 3 * * *"},)
        ),
        TaskSpec("purge_early_statuses", purge_early_statuses, schedule=({"cron": "23 * * * *"},)),
        TaskSpec("purge_message_keys", purge_message_keys, schedule=({"cron": "37 4 * * *"},)),
        TaskSpec("purge_provider_calls", purge_provider_calls, schedule=({"cron": "53 * * * *"},)),
        *CONVERSATION_TASKS,  # auto_close, drain_queues
    ]
    return {f"{PREFIX}.{spec.name}": spec for spec in specs}
