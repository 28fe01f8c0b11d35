"""Background training jobs: a Huey queue whose task supervises ``python -m backend.train``.

Start a worker with ``huey_consumer jobs.tasks -w 2 -k thread``.

Why ``jobs.tasks`` is the Huey *instance*, not a module: ``huey_consumer X.Y`` imports module
``X`` and takes its attribute ``Y`` (``huey.utils.load_class``). A real submodule
``jobs/tasks.py`` would be fragile here: whenever anything runs ``import jobs.tasks`` the
import system rebinds the package attribute ``jobs.tasks`` to that module, and the consumer
then gets a module instead of a Huey. So there is no such file: the instance lives in
:mod:`jobs.queue`, the task functions in :mod:`jobs.worker` (imported here so a consumer
registers them), and ``jobs.tasks`` is bound to the instance both as a package attribute and
in ``sys.modules``. Hence ``huey_consumer jobs.tasks``, ``huey_consumer jobs.queue.huey``,
``from jobs import tasks`` and ``import jobs.tasks`` all yield the same Huey object.
"""
import sys

from .queue import huey
from . import worker  # noqa: F401  (registers the tasks and the startup hooks)

tasks = huey
sys.modules[__name__ + ".tasks"] = huey

__all__ = ["huey", "tasks"]
