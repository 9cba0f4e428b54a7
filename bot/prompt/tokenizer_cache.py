"""A bounded cache of token counts per text, shared by the counters that count exactly.

A prompt is rebuilt every turn from mostly the same messages, so a message's count is
computed once and then looked up. Keys are the texts themselves rather than a digest of them:
a ``str`` caches its own hash and a hit compares bytes only after the hashes agree, which is
cheaper than encoding and digesting each text per lookup. Memory stays bounded because both
the number of entries and their total length are capped (least recently used goes first).
"""

from __future__ import annotations

from collections import OrderedDict


class CountCache:
    """Least-recently-used ``text → token count``, capped by entries and total characters.

    Not thread-safe: fill it on the event loop's thread (counts computed in a worker thread
    are stored after the ``await``).
    """

    def __init__(self, max_entries: int = 4096, max_chars: int = 2_000_000) -> None:
        if max_entries < 1 or max_chars < 1:
            raise ValueError("a count cache needs room for at least one entry")
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._chars = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, text: object) -> bool:
        return text in self._counts

    @property
    def chars(self) -> int:
        """Total length of the cached texts."""
        return self._chars

    def get(self, text: str) -> int | None:
        count = self._counts.get(text)
        if count is None:
            self.misses += 1
            return None
        self._counts.move_to_end(text)
        self.hits += 1
        return count

    def put(self, text: str, count: int) -> None:
        if len(text) > self.max_chars:
            return  # storing it would evict everything else for one text
        if self._counts.pop(text, None) is not None:
            self._chars -= len(text)
        self._counts[text] = count
        self._chars += len(text)
        while len(self._counts) > self.max_entries or self._chars > self.max_chars:
            evicted, _ = self._counts.popitem(last=False)
            self._chars -= len(evicted)

    def clear(self) -> None:
        self._counts.clear()
        self._chars = 0
