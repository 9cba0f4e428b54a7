"""The parsed form of a story string, and Handlebars' whitespace control over it.

Handlebars removes the whitespace that ``~`` asks for and the "standalone" lines: a line
holding only a block tag (``{{#if}}``, ``{{else}}``, ``{{/if}}``) or a comment loses its
indentation and its line break. This module reproduces its ``WhitespaceControl`` visitor on
this project's tree (same decisions, same order), which :mod:`bot.prompt.handlebars` runs once
per template at parse time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# -- the tree ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Content:
    original: str
    value: str
    left_stripped: bool = False
    right_stripped: bool = False


@dataclass(slots=True)
class _Strip:
    open: bool = False  # ``{{~``
    close: bool = False  # ``~}}``


@dataclass(slots=True)
class _Mustache:
    name: str
    params: tuple[str, ...]
    strip: _Strip


@dataclass(slots=True)
class _Comment:
    strip: _Strip


@dataclass(slots=True)
class _Program:
    body: list[_Node] = field(default_factory=list)
    chained: bool = False  # an ``{{else if}}`` chain


@dataclass(slots=True)
class _Block:
    helper: str  # "if", "unless", "#" (section on a value) or "^" (inverted section)
    param: str
    program: _Program
    inverse: _Program | None
    open_strip: _Strip
    inverse_strip: _Strip
    close_strip: _Strip


_Node = _Content | _Mustache | _Comment | _Block


# -- Handlebars' whitespace control --------------------------------------------------------------

_PREV_WS = re.compile(r"\r?\n\s*?\Z")
_PREV_WS_ROOT = re.compile(r"(?:\A|\r?\n)\s*?\Z")
_NEXT_WS = re.compile(r"\A\s*?\r?\n")
_NEXT_WS_ROOT = re.compile(r"\A\s*?(?:\r?\n|\Z)")


def _prev_ws(body: list[_Node], i: int | None, root: bool) -> bool:
    if i is None:
        i = len(body)
    prev = body[i - 1] if i >= 1 else None
    sibling = body[i - 2] if i >= 2 else None
    if prev is None:
        return root
    if isinstance(prev, _Content):
        pattern = _PREV_WS if (sibling is not None or not root) else _PREV_WS_ROOT
        return pattern.search(prev.original) is not None
    return False


def _next_ws(body: list[_Node], i: int | None, root: bool) -> bool:
    if i is None:
        i = -1
    nxt = body[i + 1] if i + 1 < len(body) else None
    sibling = body[i + 2] if i + 2 < len(body) else None
    if nxt is None:
        return root
    if isinstance(nxt, _Content):
        pattern = _NEXT_WS if (sibling is not None or not root) else _NEXT_WS_ROOT
        return pattern.search(nxt.original) is not None
    return False


def _omit_right(body: list[_Node], i: int | None, multiple: bool = False) -> None:
    at = 0 if i is None else i + 1
    current = body[at] if 0 <= at < len(body) else None
    if not isinstance(current, _Content) or (not multiple and current.right_stripped):
        return
    before = current.value
    pattern = r"\A\s+" if multiple else r"\A[ \t]*\r?\n?"
    current.value = re.sub(pattern, "", before, count=1)
    current.right_stripped = current.value != before


def _omit_left(body: list[_Node], i: int | None, multiple: bool = False) -> bool:
    at = len(body) - 1 if i is None else i - 1
    current = body[at] if 0 <= at < len(body) else None
    if not isinstance(current, _Content) or (not multiple and current.left_stripped):
        return False
    before = current.value
    pattern = r"\s+\Z" if multiple else r"[ \t]+\Z"
    current.value = re.sub(pattern, "", before, count=1)
    current.left_stripped = current.value != before
    return current.left_stripped


@dataclass(slots=True)
class _StripInfo:
    open: bool = False
    close: bool = False
    open_standalone: bool = False
    close_standalone: bool = False
    inline_standalone: bool = False


class _Whitespace:
    """Handlebars' WhitespaceControl visitor, over this module's tree."""

    def __init__(self) -> None:
        self._root_seen = False

    def program(self, program: _Program) -> None:
        root = not self._root_seen
        self._root_seen = True
        body = program.body
        for i, node in enumerate(body):
            strip = self._accept(node)
            if strip is None:
                continue
            prev_ws = _prev_ws(body, i, root)
            next_ws = _next_ws(body, i, root)
            open_standalone = strip.open_standalone and prev_ws
            close_standalone = strip.close_standalone and next_ws
            inline_standalone = strip.inline_standalone and prev_ws and next_ws
            if strip.close:
                _omit_right(body, i, True)
            if strip.open:
                _omit_left(body, i, True)
            if inline_standalone:
                _omit_right(body, i)
                _omit_left(body, i)
            if open_standalone and isinstance(node, _Block):
                _omit_right(node.program.body, None)
                _omit_left(body, i)
            if close_standalone and isinstance(node, _Block):
                _omit_right(body, i)
                _omit_left((node.inverse or node.program).body, None)

    def _accept(self, node: _Node) -> _StripInfo | None:
        if isinstance(node, _Mustache):
            return _StripInfo(open=node.strip.open, close=node.strip.close)
        if isinstance(node, _Comment):
            return _StripInfo(node.strip.open, node.strip.close, inline_standalone=True)
        if isinstance(node, _Block):
            return self._block(node)
        return None

    def _block(self, block: _Block) -> _StripInfo:
        self.program(block.program)
        if block.inverse is not None:
            self.program(block.inverse)
        program = block.program
        inverse = block.inverse
        first = last = inverse
        if inverse is not None and inverse.chained:
            nested = inverse.body[0]
            assert isinstance(nested, _Block)
            first = nested.program
            while last is not None and last.chained:
                tail = last.body[-1]
                assert isinstance(tail, _Block)
                last = tail.inverse or tail.program
        strip = _StripInfo(
            open=block.open_strip.open,
            close=block.close_strip.close,
            open_standalone=_next_ws(program.body, None, False),
            close_standalone=_prev_ws((first or program).body, None, False),
        )
        if block.open_strip.close:
            _omit_right(program.body, None, True)
        if first is not None and last is not None:
            if block.inverse_strip.open:
                _omit_left(program.body, None, True)
            if block.inverse_strip.close:
                _omit_right(first.body, None, True)
            if block.close_strip.open:
                _omit_left(last.body, None, True)
            if _prev_ws(program.body, None, False) and _next_ws(first.body, None, False):
                _omit_left(program.body, None)
                _omit_right(first.body, None)
        elif block.close_strip.open:
            _omit_left(program.body, None, True)
        return strip
