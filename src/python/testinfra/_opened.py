"""What a test opened on its state (database connections, Redis clients): closed when it ends."""

from __future__ import annotations

import contextlib
import threading
from typing import Any
from typing import TypeVar

T = TypeVar("T")


class Opened:
    def __init__(self) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()

    def add(self, item: T) -> T:
        with self._lock:
            self._items.append(item)
        return item

    def close_all(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for item in items:
            with contextlib.suppress(Exception):  # a connection the server already dropped
                item.close()
