"""Split a reply into parts that each fit one platform message.

Where a part ends, in order of preference: a paragraph break (blank line), a line break, a
sentence end (``. ! ? …`` before whitespace, also after closing quotes, brackets or ``*``, and
CJK ``。！？``), a word boundary, and only as a last resort a hard cut, moved back a few
characters so it does not fall inside a combining sequence, an emoji sequence or a surrogate
pair. The first three are used only when they leave the part at least half full: this keeps
parts full and makes the split linear, since every scan of a window ends a part that long.

What is dropped is whitespace, and only at a cut or at the ends of the text: the part before a
cut loses its trailing whitespace; the part after it loses its leading whitespace up to and
including the last line break in it, so the indentation of its first line survives (code).
The text's own leading and trailing whitespace is trimmed the same way.

Markdown code fences (```` ``` ```` or ``~~~``) open at a cut are closed at the end of the part
(``"\\n```"``) and reopened with their opening line at the start of the next one, so every
message renders as code. Those added lines are the only text that is not in the source; a
fence whose two extra lines would cost more than a quarter of the limit is not balanced.

Parts are stable while a text grows: for ``text`` and any longer ``text + more``, every part of
``text`` but the last is also a part of the longer text. :func:`split_parts` can resume after
the parts a caller froze (``start=part.end, fence=part.fence``) without splitting them again.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# The greedy ``.*`` makes each match the *last* place in the window (one C-speed backtrack).
_PARAGRAPH = re.compile(r"(?s:.*)(\n[ \t]*\n)")
_SENTENCE = re.compile(
    # a punctuation run is tried only from its first mark, so long runs stay linear
    r"(?s:.*)((?<![.!?…])[.!?…]++[\"'”’»)\]*_~]*+(?=\s)"
    r"|(?<![。！？])[。！？]++[」』”’）]*+(?=(?s:.)))"
)
_SPACE = re.compile(r"(?s:.*)(\s)")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_HARD_CUT_BACKOFF = 32


@dataclass(frozen=True, slots=True)
class Fence:
    """A Markdown code fence left open: its opening line and the run of marks that closes it."""

    opener: str
    marker: str
    balanced: bool


@dataclass(frozen=True, slots=True)
class Part:
    """One message's worth. ``text`` is ``source[start:end]`` plus any fence lines added.

    ``fence`` is the fence open after this part; pass it with ``start=end`` to resume.
    """

    text: str
    start: int
    end: int
    fence: Fence | None


def split_text(text: str, limit: int) -> list[str]:
    """The parts of ``text``, each at most ``limit`` characters; ``[]`` for blank text."""
    return [part.text for part in split_parts(text, limit)]


def split_parts(
    text: str, limit: int, *, start: int = 0, fence: Fence | None = None
) -> list[Part]:
    """Split ``text[start:]`` (with ``fence`` open at ``start``) into :class:`Part` values."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    stop = len(text)
    while stop > start and text[stop - 1].isspace():
        stop -= 1
    parts: list[Part] = []
    pos = _skip_gap(text, start)
    while pos < stop:
        prefix = f"{fence.opener}\n" if fence is not None and fence.balanced else ""
        room = limit - len(prefix)
        if stop - pos <= room:
            after = _scan_fences(text, pos, stop, fence, limit)
            parts.append(Part(prefix + text[pos:stop], pos, stop, after))
            break
        reserve = _closer_cost(fence)
        for attempt in range(3):
            # A fence opened inside this part may need a longer closer than the one reserved;
            # the third attempt reserves the most any balanced fence can cost.
            cut = _find_cut(text, pos, pos + room - reserve)
            end = cut
            while end > pos and text[end - 1].isspace():
                end -= 1
            after = _scan_fences(text, pos, end, fence, limit)
            need = _closer_cost(after)
            if need <= reserve:
                break
            reserve = need if attempt == 0 else max(need, limit // 4)
        if end == pos:  # only whitespace before the cut: drop it, fence state unchanged
            pos = _skip_gap(text, cut)
            continue
        suffix = f"\n{after.marker}" if after is not None and after.balanced else ""
        parts.append(Part(prefix + text[pos:end] + suffix, pos, end, after))
        fence = after
        pos = _skip_gap(text, end)
    return parts


def _closer_cost(fence: Fence | None) -> int:
    return len(fence.marker) + 1 if fence is not None and fence.balanced else 0


def _skip_gap(text: str, pos: int) -> int:
    """Where the next part starts: past the whitespace run, but keeping its last line's indent."""
    after_newline = -1
    n = len(text)
    while pos < n and text[pos].isspace():
        if text[pos] == "\n":
            after_newline = pos + 1
        pos += 1
    return after_newline if after_newline >= 0 else pos


def _find_cut(text: str, pos: int, hi: int) -> int:
    """The best end (exclusive) for a part starting at ``pos`` that may not pass ``hi``."""
    half = pos + (hi - pos) // 2
    found = _PARAGRAPH.match(text, half, hi + 1)
    if found:
        return found.start(1)
    line = text.rfind("\n", half, hi + 1)
    if line > pos:
        return line
    found = _SENTENCE.match(text, half, hi + 1)
    if found and found.end(1) > pos:
        return found.end(1)
    found = _SPACE.match(text, pos + 1, hi + 1)
    if found:
        return found.start(1)
    return _hard_cut(text, pos, hi)


def _hard_cut(text: str, pos: int, hi: int) -> int:
    cut = hi
    floor = max(pos + 1, hi - _HARD_CUT_BACKOFF)
    while cut > floor and _continues_cluster(text, cut):
        cut -= 1
    return hi if _continues_cluster(text, cut) else cut


def _continues_cluster(text: str, i: int) -> bool:
    """Whether ``text[i]`` belongs to the character before it (cutting there would break it)."""
    char, before = text[i], text[i - 1]
    if before == "\u200d" or "\udc00" <= char <= "\udfff":
        return True  # after a zero-width joiner, or the low half of a surrogate pair
    if char == "\u200d" or "\ufe00" <= char <= "\ufe0f" or "\U000e0000" <= char <= "\U000e01ef":
        return True  # joiner, variation selectors, emoji tag characters
    if "\U0001f3fb" <= char <= "\U0001f3ff":
        return True  # skin-tone modifiers
    return unicodedata.category(char) in ("Mn", "Mc", "Me")


def _scan_fences(text: str, pos: int, end: int, fence: Fence | None, limit: int) -> Fence | None:
    """The fence open at ``end``, given ``fence`` open at ``pos``.

    Only lines that begin inside ``[pos, end)`` count, each read no further than ``end``, so a
    line split by a cut is judged once and the result never depends on text after ``end``.
    """
    if pos > 0 and text[pos - 1] != "\n":
        newline = text.find("\n", pos, end)
        if newline < 0:
            return fence
        pos = newline + 1
    while pos < end:
        newline = text.find("\n", pos, end)
        line_end = end if newline < 0 else newline
        fence = _fence_step(text[pos:line_end], fence, limit)
        if newline < 0:
            break
        pos = newline + 1
    return fence


def _fence_step(line: str, fence: Fence | None, limit: int) -> Fence | None:
    found = _FENCE.match(line)
    if found is None:
        return fence
    marks, rest = found.group(1), line[found.end() :]
    if fence is None:
        if marks[0] == "`" and "`" in rest:
            return None  # CommonMark: a backtick fence's info string has no backticks
        opener = line.rstrip()
        cost = len(opener) + len(marks) + 2
        return Fence(opener, marks, balanced=cost <= limit // 4)
    closes = marks[0] == fence.marker[0] and len(marks) >= len(fence.marker)
    return None if closes and not rest.strip() else fence
