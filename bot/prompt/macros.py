"""A small, safe subset of SillyTavern's macros, expanded in one bounded pass.

Supported (names case-insensitive, whitespace inside the braces tolerated):
``{{char}}`` ``<BOT>`` ``<CHAR>`` → character name; ``{{user}}`` ``<USER>`` → user name;
``{{original}}`` → the prompt being overridden (first occurrence only, as in SillyTavern);
``{{newline}}`` → ``\\n``; ``{{noop}}`` and ``{{// comment}}`` → nothing; ``{{trim}}`` removes
itself and the newlines around it. ``MacroContext.extra`` adds more names (e.g. the continue
nudge's ``{{lastChatMessage}}``). Anything else is left exactly as written.

Safety: replacement values are inserted literally and never scanned again, so no macro can
expand into another one (no recursion, no macro bombs): the output is at most the input plus
one value per macro. Only card and config text goes through here — never what chat users type.
Comments cannot contain braces; SillyTavern's newer nested/block syntax comes with the full
parser later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# ``[^{}]*`` keeps matching linear: a scan from ``{{`` stops at the next brace.
_TOKEN = re.compile(r"\{\{([^{}]*)\}\}|<(USER|BOT|CHAR)>", re.IGNORECASE)
_TRIM = object()  # marker for {{trim}} inside the piece list


@dataclass(frozen=True, slots=True)
class MacroContext:
    """Values for one expansion. ``extra`` keys are matched case-insensitively."""

    user: str
    char: str
    original: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


def expand(text: str, ctx: MacroContext) -> str:
    """Expand the supported macros in ``text``; unknown ones stay as written."""
    if "{{" not in text and "<" not in text:
        return text
    extra = {k.lower(): v for k, v in ctx.extra.items()}
    original_used = False
    pieces: list[str | object] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        pieces.append(text[pos : match.start()])
        pos = match.end()
        legacy = match.group(2)
        if legacy is not None:
            pieces.append(ctx.user if legacy.upper() == "USER" else ctx.char)
            continue
        body = match.group(1).strip()
        name = body.lower()
        if name.startswith("//") or name == "noop":
            continue
        if name == "trim":
            pieces.append(_TRIM)
        elif name == "char":
            pieces.append(ctx.char)
        elif name == "user":
            pieces.append(ctx.user)
        elif name == "newline":
            pieces.append("\n")
        elif name == "original":
            # SillyTavern substitutes the overridden prompt once; later copies become empty
            pieces.append("" if original_used else ctx.original)
            original_used = True
        elif name in extra:
            pieces.append(extra[name])
        else:
            pieces.append(match.group(0))
    pieces.append(text[pos:])
    return _join(pieces)


def _join(pieces: list[str | object]) -> str:
    """Concatenate, letting each trim marker eat the newlines on both sides of it.

    Done on the pieces rather than with a regex around ``{{trim}}`` because a pattern like
    ``\\n*{{trim}}`` backtracks quadratically over long runs of newlines.
    """
    segments: list[list[str]] = [[]]
    for piece in pieces:
        if piece is _TRIM:
            segments.append([])
        else:
            segments[-1].append(str(piece))
    if len(segments) == 1:
        return "".join(segments[0])
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        part = "".join(segment)
        if i > 0:
            part = part.lstrip("\r\n")
        if i < last:
            part = part.rstrip("\r\n")
        out.append(part)
    return "".join(out)
