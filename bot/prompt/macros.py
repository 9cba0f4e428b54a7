"""SillyTavern-compatible macros, through a real parser (text → tree → evaluator).

Syntax (one superset of SillyTavern 1.12.6 and its newer engine; names case-insensitive,
whitespace inside the braces ignored): ``{{name}}``, ``{{name arg}}``, ``{{name::a::b}}``,
legacy ``{{name:arg}}`` and ``{{random:a,b}}`` (``\\,`` a literal comma); nesting, resolved
inner-first (``{{getvar::{{char}}_mood}}``); blocks ``{{name arg}}…{{/name}}`` whose body is
the last argument, trimmed and de-indented unless the ``#`` flag is given
(``{{#setvar x}}…{{/setvar}}``); ``{{if cond}}…{{else}}…{{/if}}`` and ``{{if cond::text}}``
(falsy: ``""``, ``false``, ``0``, ``off``, ``no``; ``!`` negates; a bare macro name or
``.var``/``$var`` is looked up; only the chosen branch is evaluated); comments ``{{// …}}``
and ``{{//}}…{{///}}``; escapes ``\\{`` ``\\}``; variable shorthands ``{{.local}}`` and
``{{$global}}`` with ``= ++ -- += -= || ?? ||= ??= == != > >= < <=``; legacy ``<USER>``
``<BOT>`` ``<CHAR>`` ``<GROUP>`` ``<CHARIFNOTGROUP>``. Unknown or malformed macros are left
as written (with the macros inside them expanded), as SillyTavern does.

Macros: :mod:`bot.prompt.macro_table` has the table (every server-side name of the
reference, with its aliases); :mod:`bot.prompt.macro_time` the date format subset;
:mod:`bot.prompt.macro_vars` the JavaScript number rules of the variable macros.

Values: card and preset text (:class:`CardMacros`, :class:`PromptMacros`) is expanded
where it is inserted; names, persona, messages, notes, ``extra`` and ``original`` are
inserted literally and never scanned again, so nothing a chat user typed can run a macro.

Variables: ``{{setvar}}`` and friends change ``ctx.local_vars`` / ``ctx.global_vars`` in
place; the caller persists those mappings (see :class:`MacroContext`).

Bounds (:class:`MacroLimits`): nesting depth, macros parsed and evaluated, characters
produced, dice count and sides, variable size. Past a limit the rest is left as written and
the result carries a warning; no input hangs or raises. A :class:`ParseCache` in the context
keeps parsed trees between calls.

Differences from SillyTavern worth knowing: ``{{pick}}`` uses its own (stable) hash, so it
picks differently from SillyTavern for the same chat; ``{{timeDiff}}`` parses ISO 8601 and
the ``{{date}}`` forms only and has no "in"/"ago" (as 1.12.6); ``{{currentSwipeId}}`` is
1-based on the first swipe too (1.12.6 printed nothing there). As in the newer engine and
unlike 1.12.6, arguments are trimmed, variable macros may span lines, and a value is never
expanded again by a later pass.
"""

from __future__ import annotations

import re

from bot.prompt.macro_env import (
    CardMacros,
    ChatMacros,
    MacroContext,
    MacroLimits,
    MacroResult,
    PromptMacros,
)
from bot.prompt.macro_eval import Evaluator
from bot.prompt.macro_lib import clean
from bot.prompt.macro_parse import ParseCache

__all__ = [
    "CardMacros",
    "ChatMacros",
    "MacroContext",
    "MacroLimits",
    "MacroResult",
    "ParseCache",
    "PromptMacros",
    "expand",
    "expand_user_text",
    "expand_with",
]

_USER_TEXT = re.compile(r"\{\{\s*(user|char)\s*\}\}|<(USER|BOT|CHAR)>", re.IGNORECASE)


def expand_with(text: str, ctx: MacroContext) -> MacroResult:
    """Expand the macros in ``text`` (card, preset or other admin-written text).

    Variable changes happen in ``ctx.local_vars`` / ``ctx.global_vars``; banned strings
    and warnings come back in the result.
    """
    if "{" not in text and "}" not in text and "<" not in text:
        return MacroResult(text)
    evaluator = Evaluator(ctx)
    out = evaluator.run(text)
    return MacroResult(out, tuple(evaluator.banned), evaluator.warnings)


def expand(text: str, ctx: MacroContext) -> str:
    """:func:`expand_with`, text only."""
    return expand_with(text, ctx).text


def expand_user_text(text: str, ctx: MacroContext) -> str:
    """The only expansion text typed by chat users gets: ``{{user}}`` and ``{{char}}`` (and
    ``<USER>``, ``<BOT>``, ``<CHAR>``) become the names. Nothing else is touched — no
    variables, randomness, time, card fields or escapes — and the names are inserted
    literally in one pass, so the output is at most the input plus one name per match."""
    if "{" not in text and "<" not in text:
        return text
    user, char = clean(ctx.user), clean(ctx.char)

    def name(m: re.Match[str]) -> str:
        which = (m.group(1) or m.group(2)).lower()
        return user if which == "user" else char

    return _USER_TEXT.sub(name, text)
