"""Lambda's sandboxes on one machine: each a separate worker process that imports its function's handler
once (the cold start) and then serves one invocation at a time, warm, reused across ticks.

Lambda runs concurrent invocations of a function in separate sandboxes (one process each, its own CPU
share), never as threads of one interpreter: ten shards of a tick are ten sandboxes in parallel. The local
runner's default (the handlers called in this process, from threads) shares one GIL between all shards;
`Sandboxes.invoke` instead hands each invocation to an idle worker of that function, starting one (up to
`per_function`) when none is idle, as Lambda scales out. Workers reach AWS the way deployed functions do,
through the endpoint in their environment (the local stack's moto server), so they need no shared memory.

`setup`, if given, runs in every worker before the handler is imported, and `before` with every event
before the handler sees it (picklable callables: the benchmark puts its fake exchange behind the real
CcxtSource there, and moves the fake's clock to the tick the event names).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from traderai.testing.handlers import FUNCTIONS_DIR, FakeLambdaContext, load_handler


class InvocationError(Exception):
    """The handler raised in its sandbox; the message is `<ExceptionType>: <message>` as Lambda reports it."""


def _serve(connection: Connection, directory: str, environment: dict[str, str], setup: Callable[[], None] | None,
           before: Callable[[Any], None] | None,
           functions_dir: Path) -> None:  # pragma: no cover - runs in the worker process
    os.environ.update(environment)
    if setup is not None:
        setup()
    started = time.perf_counter()
    handler = load_handler(directory, functions_dir).handler
    connection.send(("ready", time.perf_counter() - started))
    while True:
        request = connection.recv()
        if request is None:
            return
        try:
            if before is not None:
                before(request)
            reply = handler(request, FakeLambdaContext())
        except Exception as exc:  # noqa: BLE001 - reported to the caller, as Lambda reports a function error
            connection.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        else:
            connection.send(("ok", reply))


@dataclass(eq=False)  # a worker is itself, not its fields
class _Worker:
    process: Any
    connection: Connection
    import_seconds: float


@dataclass
class Sandboxes:
    """Up to `per_function` warm worker processes per function (logical id -> `functions/<directory>/`), each
    with its function's own environment (logical id -> variables, as the template gives them)."""

    directories: Mapping[str, str]
    environments: Mapping[str, Mapping[str, str]]
    per_function: int = 10
    setup: Callable[[], None] | None = None
    before: Callable[[Any], None] | None = None
    functions_dir: Path = FUNCTIONS_DIR
    start_method: str = "spawn"  # never fork a process that runs threads (the moto server, the gateway)
    _idle: dict[str, list[_Worker]] = field(default_factory=dict, init=False)
    _all: dict[str, list[_Worker]] = field(default_factory=dict, init=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, init=False)

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run `event` in an idle sandbox of the function (a new one if none is idle and fewer than
        `per_function` exist, else wait for one); the handler's exception raises InvocationError."""
        worker = self._take(logical_id)
        try:
            worker.connection.send(event)
            status, *payload = worker.connection.recv()
        except BaseException:
            self._discard(logical_id, worker)
            raise
        self._give_back(logical_id, worker)
        if status == "error":
            raise InvocationError(payload[0])
        return payload[0]

    def start(self, logical_id: str, count: int) -> None:
        """Start the function's sandboxes up to `count` (at most `per_function`), idle and warm, in parallel: a
        measurement that must not meet a cold start starts them first (after a while deployed, a function has
        as many sandboxes as its peak concurrency)."""
        with self._lock:
            missing = max(0, min(count, self.per_function) - len(self._all.setdefault(logical_id, [])))
            placeholders = [_Worker(None, None, 0.0) for _ in range(missing)]  # type: ignore[arg-type]
            self._all[logical_id].extend(placeholders)
        started: list[_Worker] = []
        try:
            with ThreadPoolExecutor(max(1, missing)) as pool:
                for worker in pool.map(lambda _: self._start(logical_id), placeholders):
                    started.append(worker)
        finally:
            with self._lock:
                workers = self._all[logical_id]
                for placeholder in placeholders:
                    workers.remove(placeholder)
                workers.extend(started)
                self._idle.setdefault(logical_id, []).extend(started)
                self._lock.notify_all()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {logical_id: len(workers) for logical_id, workers in self._all.items()}

    def close(self) -> None:
        with self._lock:
            workers = [w for ws in self._all.values() for w in ws]
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.connection.send(None)
        for worker in workers:
            worker.process.join(10)
            if worker.process.is_alive():
                worker.process.terminate()

    def __enter__(self) -> Sandboxes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _take(self, logical_id: str) -> _Worker:
        with self._lock:
            while True:
                idle = self._idle.setdefault(logical_id, [])
                if idle:
                    return idle.pop()
                if len(self._all.setdefault(logical_id, [])) < self.per_function:
                    placeholder = _Worker(None, None, 0.0)  # type: ignore[arg-type]
                    self._all[logical_id].append(placeholder)  # counted while it starts, outside the lock
                    break
                self._lock.wait()
        try:
            worker = self._start(logical_id)
        except BaseException:
            with self._lock:
                self._all[logical_id].remove(placeholder)
                self._lock.notify_all()
            raise
        with self._lock:
            workers = self._all[logical_id]
            workers[workers.index(placeholder)] = worker
        return worker

    def _give_back(self, logical_id: str, worker: _Worker) -> None:
        with self._lock:
            self._idle.setdefault(logical_id, []).append(worker)
            self._lock.notify_all()

    def _discard(self, logical_id: str, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all.get(logical_id, []):
                self._all[logical_id].remove(worker)
            self._lock.notify_all()
        worker.process.terminate()

    def _start(self, logical_id: str) -> _Worker:
        context = multiprocessing.get_context(self.start_method)
        parent, child = context.Pipe()
        process = context.Process(  # type: ignore[attr-defined]
            target=_serve, name=f"sandbox-{logical_id}", daemon=True,
            args=(child, self.directories[logical_id], dict(self.environments[logical_id]), self.setup, self.before,
                  self.functions_dir))
        process.start()
        child.close()
        status, seconds = parent.recv()
        if status != "ready":  # pragma: no cover - _serve sends ready or dies (EOFError above)
            raise InvocationError(f"{logical_id}: sandbox did not start ({status})")
        return _Worker(process, parent, seconds)
