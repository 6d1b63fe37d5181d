"""The task instances behind the app: one per (task, model directory), shared by every session.

A Task loads its model lazily and thread-safely, so sharing the instance is what
makes a model load once for all users. The least recently used instances are
dropped past a small cap, so trying many checkpoints cannot exhaust memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from genseq.tasks import Task

MAX_LOADED = 6


class TaskPool:
    def __init__(self, max_loaded: int = MAX_LOADED):
        self.max_loaded = max_loaded
        self._tasks: OrderedDict[tuple[type[Task], str | None], Task] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, task_class: type[Task], model: str | None) -> Task:
        """The shared instance of task_class on model (None: the task's default model)."""
        key = (task_class, model)
        with self._lock:
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = task_class(model=model)
            self._tasks.move_to_end(key)
            while len(self._tasks) > self.max_loaded:
                self._tasks.popitem(last=False)
            return task

    def forget(self, model: str) -> None:
        """Drop every instance on model, whose checkpoint has changed (a training run saved a better one)."""
        with self._lock:
            for key in [key for key in self._tasks if key[1] == model]:
                del self._tasks[key]
