"""Warm pools: never-used instances of a spec, started ahead for function-scoped fixtures.

While one test runs, the next instances start in the background; a test takes the oldest one and
the pool starts another. A test never gets an instance another test used: each is taken once and
removed after its test. How many start ahead is bounded by the pool depth (a setting, by default
the machine's cores) and, when the session knows it, by how many tests still need the spec, so
no instance is started for nobody.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import Future
from typing import Generic
from typing import TypeVar

G = TypeVar("G")


class Pool(Generic[G]):
    """Instances of one spec, each started by `start` on the executor, handed out oldest first."""

    def __init__(
        self, start: Callable[[], G], discard: Callable[[G], None], executor: Executor, depth: int
    ) -> None:
        self._start = start
        self._discard = discard
        self._executor = executor
        self._depth = depth
        self._lock = threading.Lock()
        self._pending: deque[Future[G]] = deque()
        # Uses still to come, when the session knows them (None: unknown, keep `depth` ahead).
        self._demand: int | None = None
        self._failed = False

    def expect(self, uses: int) -> None:
        """The session will take `uses` instances in all: start the first ones now."""
        with self._lock:
            self._demand = uses
        self._fill()

    def take(self) -> G:
        """A ready, never-used instance (waiting for it if it is still starting)."""
        with self._lock:
            future = self._pending.popleft() if self._pending else None
            if self._demand is not None:
                self._demand = max(0, self._demand - 1)
        if future is None:
            future = self._executor.submit(self._start)
        try:
            graph = future.result()
        except BaseException:
            # A broken spec would fail every start: stop starting ahead, start on demand only.
            self._failed = True
            raise
        self._fill()
        return graph

    def _fill(self) -> None:
        with self._lock:
            if self._failed or self._depth <= 0:
                return
            wanted = self._depth if self._demand is None else min(self._depth, self._demand)
            while len(self._pending) < wanted:
                self._pending.append(self._executor.submit(self._start))

    def close(self) -> None:
        """Remove every instance started ahead that no test took (all of them, even after one
        removal fails; then the first failure is raised)."""
        with self._lock:
            pending, self._pending = list(self._pending), deque()
            self._failed = True  # nothing more is started ahead
        errors: list[Exception] = []
        for future in pending:
            if future.cancel():
                continue
            try:
                graph = future.result()
            except Exception:  # its start failed: nothing to remove
                continue
            try:
                self._discard(graph)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
