"""Background tasks: the broker factory, the per-process queue and core's own tasks.

The worker and scheduler processes that consume them are an edge: `guiche.worker`.
"""
