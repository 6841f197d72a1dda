"""Network work off Blender's main thread.

A task's work function runs on a worker thread and may call `report(payload)`; progress,
the result or the exception travel back through a queue that the main thread drains (a
bpy.app.timers callback in the UI), so every Blender write happens on the main thread.
In blocking mode (Blender in background, where timers never fire) the work runs inline and
the callbacks are called directly. Nothing here imports bpy.
"""

from __future__ import annotations

import queue
import threading
import traceback
from typing import Any, Callable


class Task:
    def __init__(self, name: str):
        self.name = name
        self.cancel_event = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.result: Any = None

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class TaskRunner:
    def __init__(self, blocking: Callable[[], bool] = lambda: False, wake: Callable[[], None] | None = None):
        self._blocking = blocking
        self._wake = wake  # called (on the submitting thread) when events may be pending
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._active: dict[str, Task] = {}

    def busy(self, name: str | None = None) -> bool:
        with self._lock:
            return bool(self._active) if name is None else name in self._active

    def task(self, name: str) -> Task | None:
        with self._lock:
            return self._active.get(name)

    @property
    def pending(self) -> bool:
        return self.busy() or not self._events.empty()

    def submit(self, name: str, work: Callable[[Task, Callable[[Any], None]], Any], *,
               on_done: Callable[[Any], None] | None = None, on_error: Callable[[BaseException], None] | None = None,
               on_progress: Callable[[Any], None] | None = None) -> Task:
        """Run work(task, report); only one task per name at a time (RuntimeError otherwise)."""
        task = Task(name)
        with self._lock:
            if name in self._active:
                raise RuntimeError(f"{name} is already running")
            self._active[name] = task
        if self._blocking():
            try:
                task.result = work(task, lambda payload: _call(on_progress, payload))
            except BaseException as exc:  # noqa: BLE001 - handed to on_error
                task.error = exc
            self._finish(task)
            if task.error is None:
                _call(on_done, task.result)
            elif on_error is not None:
                _call(on_error, task.error)
            else:
                raise task.error
            return task

        def run():
            try:
                task.result = work(task, lambda payload: self._events.put((on_progress, payload)))
                self._events.put((on_done, task.result))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                task.error = exc
                self._events.put((on_error, exc))
            finally:
                self._events.put((self._finish, task))

        threading.Thread(target=run, name=f"spatia-{name}", daemon=True).start()
        if self._wake is not None:
            self._wake()
        return task

    def _finish(self, task: Task) -> None:
        with self._lock:
            if self._active.get(task.name) is task:
                del self._active[task.name]
        task.done.set()

    def drain(self) -> int:
        """Run queued callbacks on the calling (main) thread; returns how many ran."""
        count = 0
        while True:
            try:
                callback, payload = self._events.get_nowait()
            except queue.Empty:
                return count
            _call(callback, payload)
            count += 1

    def cancel_all(self) -> None:
        with self._lock:
            for task in self._active.values():
                task.cancel()


def _call(callback, payload) -> None:
    if callback is None:
        return
    try:
        callback(payload)
    except Exception:  # a broken callback must not stop the queue
        traceback.print_exc()
