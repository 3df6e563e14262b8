"""Weekly income answers, encoded once per process and kept per checkpoint version: a repeated read costs one position check."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

# Per web process. A 520-week, 3-currency answer is about 220 KB, a year's about 22 KB.
MAX_BYTES = 16 * 1024 * 1024


class AnswerCache:
    """Bytes by key, least recently used dropped first once the total passes `max_bytes`.

    The keys carry everything an answer depends on (see analytics/api.py), so an entry is
    never stale, only unused: nothing needs invalidating, old versions just age out.
    """

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        # The web process serves requests on several threads.
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            body = self._entries.get(key)
            if body is not None:
                self._entries.move_to_end(key)
            return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= len(previous)
            self._entries[key] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes


ANSWERS = AnswerCache()
