"""Reasoning ("thinking") written inline by a model, kept apart from the reply, as
SillyTavern's auto-parse does: a reply that starts (after whitespace) with ``prefix`` has its
reasoning up to the first ``suffix``; both parts are trimmed.

:func:`split_reasoning` is for a finished reply. :class:`ReasoningSplitter` does the same on a
stream of deltas (a prefix or suffix may be split across deltas), emitting reply and reasoning
deltas whose concatenations equal what :func:`split_reasoning` gives for the whole text. The one
difference is SillyTavern's own: when the stream ends inside the reasoning (no suffix), the
streaming parser keeps it all as reasoning with an empty reply (``unterminated``), while the
finished-reply parser, finding no complete block, leaves the text as the reply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

DEFAULT_PREFIX = "<think>"
DEFAULT_SUFFIX = "</think>"


def split_reasoning(
    text: str, prefix: str = DEFAULT_PREFIX, suffix: str = DEFAULT_SUFFIX
) -> tuple[str, str]:
    """``(reasoning, reply)``; ``("", text)`` unchanged when there is no complete block at the
    start."""
    start = _reasoning_start(text, prefix) if prefix and suffix else None
    if start is None:
        return "", text
    end = text.find(suffix, start)
    if end < 0:
        return "", text
    return text[start:end].strip(), text[end + len(suffix) :].strip()


def join_reasoning(
    reasoning: str,
    reply: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    suffix: str = DEFAULT_SUFFIX,
    separator: str = "\n\n",
    open_ended: bool = False,
) -> str:
    """The reverse, for prompts that send reasoning back (SillyTavern's ``add_to_prompts``):
    ``prefix + reasoning + suffix + separator + reply``. ``open_ended`` leaves the block open
    (``prefix + reasoning``), for continuing a reply that has reasoning but no text yet."""
    if not reasoning:
        return reply
    if open_ended and not reply:
        return prefix + reasoning
    return f"{prefix}{reasoning}{suffix}{separator}{reply}"


def _reasoning_start(text: str, prefix: str) -> int | None:
    """Where the reasoning begins if ``text`` opens with ``prefix`` after whitespace."""
    at = _prefix_position(text, prefix)
    return at + len(prefix) if at is not None and text.startswith(prefix, at) else None


def _prefix_position(text: str, prefix: str) -> int | None:
    """The one place the prefix can start: its first visible character must sit on the text's
    (a lazy ``^\\s*?`` takes no more whitespace than that). None if there is no such place."""
    leading = len(text) - len(text.lstrip())
    prefix_leading = len(prefix) - len(prefix.lstrip())
    if prefix_leading == len(prefix):  # an all-whitespace prefix matches at the start
        return 0
    at = leading - prefix_leading
    return at if at >= 0 else None


class SplitState(enum.Enum):
    WAITING = "waiting"  # not yet known whether the text opens with the prefix
    REASONING = "reasoning"
    REPLY = "reply"


@dataclass(frozen=True, slots=True)
class SplitDelta:
    reply: str = ""
    reasoning: str = ""


class _Trimmed:
    """Streams a text's ``strip()``: drops leading whitespace, holds back trailing whitespace
    until more text follows it, and drops it at the end."""

    def __init__(self) -> None:
        self._started = False
        self._held = ""

    def push(self, chunk: str) -> str:
        if not self._started:
            chunk = chunk.lstrip()
            if not chunk:
                return ""
            self._started = True
        text = self._held + chunk
        body = text.rstrip()
        self._held = text[len(body) :]
        return body


class ReasoningSplitter:
    """Feed it a reply's deltas; it returns the reply and reasoning text each delta adds.

    Text is held back only while it could still be part of the prefix or suffix, or is
    whitespace that trimming may remove.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, suffix: str = DEFAULT_SUFFIX) -> None:
        self.prefix = prefix
        self.suffix = suffix
        self.state = SplitState.WAITING if prefix and suffix else SplitState.REPLY
        self.reply = ""
        self.reasoning = ""
        self.unterminated = False
        self._passthrough = True  # REPLY without a reasoning block: the text as it is
        self._pending = ""
        self._reasoning_out = _Trimmed()
        self._reply_out = _Trimmed()

    def feed(self, delta: str) -> SplitDelta:
        reply, reasoning = "", ""
        if self.state is SplitState.WAITING:
            self._pending += delta
            start = _reasoning_start(self._pending, self.prefix)
            if start is not None:
                self.state = SplitState.REASONING
                delta, self._pending = self._pending[start:], ""
            elif self._may_open(self._pending):
                return SplitDelta()
            else:
                self.state = SplitState.REPLY
                delta, self._pending = self._pending, ""
        if self.state is SplitState.REASONING:
            reasoning, delta = self._think(delta)
        if self.state is SplitState.REPLY and delta:
            reply = delta if self._passthrough else self._reply_out.push(delta)
        return self._out(reply, reasoning)

    def finish(self) -> SplitDelta:
        """The end of the stream: whatever was held back that belongs to the result."""
        reply, reasoning = "", ""
        if self.state is SplitState.WAITING:
            reply, self._pending = self._pending, ""  # it never opened: plain reply
            self.state = SplitState.REPLY
        elif self.state is SplitState.REASONING:
            reasoning, self._pending = self._reasoning_out.push(self._pending), ""
            self.unterminated = True
        return self._out(reply, reasoning)

    def _may_open(self, text: str) -> bool:
        if not text.strip():
            return True  # only whitespace so far
        at = _prefix_position(text, self.prefix)
        return at is not None and self.prefix.startswith(text[at:])

    def _think(self, text: str) -> tuple[str, str]:
        """Reasoning text to emit, and the reply text after the suffix if it arrived."""
        self._pending += text
        end = self._pending.find(self.suffix)
        if end >= 0:
            body, rest = self._pending[:end], self._pending[end + len(self.suffix) :]
            self._pending = ""
            self.state = SplitState.REPLY
            self._passthrough = False
            return self._reasoning_out.push(body), rest
        # the last len(suffix) - 1 characters may be the start of the suffix
        safe = len(self._pending) - (len(self.suffix) - 1)
        if safe <= 0:
            return "", ""
        body, self._pending = self._pending[:safe], self._pending[safe:]
        return self._reasoning_out.push(body), ""

    def _out(self, reply: str, reasoning: str) -> SplitDelta:
        self.reply += reply
        self.reasoning += reasoning
        return SplitDelta(reply, reasoning)
