"""Background tasks: the broker factory, the per-process queue, and the worker/scheduler loops.

`guiche.tasks.runners` (the process entry points) is imported on demand: it needs the
app module, which itself imports this package's queue.
"""

from guiche.tasks.broker import make_broker, register_tasks, schedule_labels
from guiche.tasks.queue import TaskQueue, UnknownTask

__all__ = ["TaskQueue", "UnknownTask", "make_broker", "register_tasks", "schedule_labels"]
