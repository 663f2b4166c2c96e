"""A bounded LRU cache for results that depend only on their inputs: embeddings and greedy (or seeded)
replies. Keys are sha256 digests of (model, operation, content, parameters), so a key never holds a
payload and equal inputs hit whatever route they came from."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

MISSING = object()


def cache_key(model: str, op: str, content: bytes | str, params: dict[str, Any] | None = None) -> str:
    """The sha256 hex digest naming one result."""
    return cache_keys(model, op, [content], params)[0]


def cache_keys(
    model: str, op: str, contents: Sequence[bytes | str], params: dict[str, Any] | None = None
) -> list[str]:
    """:func:`cache_key` of each of ``contents`` (the shared header is encoded once)."""
    header = json.dumps(
        [model, op, params or {}], sort_keys=True, separators=(",", ":"), default=str
    ).encode()
    prefix = hashlib.sha256(len(header).to_bytes(8, "little") + header)
    keys = []
    for content in contents:
        part = content.encode() if isinstance(content, str) else bytes(content)
        digest = prefix.copy()
        digest.update(len(part).to_bytes(8, "little"))  # length-prefixed: no two splits collide
        digest.update(part)
        keys.append(digest.hexdigest())
    return keys


class LRUCache:
    """At most ``max_entries`` results; the least recently used goes first. Thread-safe."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def enabled(self) -> bool:
        """False when the cache holds nothing (``max_entries`` 0): callers need not make keys."""
        return self.max_entries > 0

    def get(self, key: str) -> Any:
        """The cached value, or ``MISSING``; counts a hit or a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return MISSING

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (callers store immutable values: read-only arrays, strings, tuples)."""
        if not self.enabled:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
