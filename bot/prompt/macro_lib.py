"""What macro handlers share — the markers, trimming, the handler interface — and the
macros that need nothing from the chat: random, pick, roll, variables and text utilities.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from random import Random
from typing import Protocol

from bot.prompt.macro_env import MacroContext
from bot.prompt.macro_vars import js_number, var_add, var_get, var_set

# In-band markers (Unicode noncharacters, stripped from input and values): {{noop}} leaves
# NOOP so that trimming stops at it, {{trim}} leaves TRIM for the final newline pass.
NOOP = "\ufdd0"
TRIM = "\ufdd1"

Site = tuple[str, int]  # the source text and the macro's offset in it ({{pick}}'s seed)


def clean(text: str) -> str:
    """Remove markers from a value that comes from outside (input, names, messages)."""
    if NOOP in text or TRIM in text:
        return text.replace(NOOP, "").replace(TRIM, "")
    return text


def finish(text: str) -> str:
    """Apply ``{{trim}}`` (eat the newlines on both sides, up to a ``{{noop}}``) and drop the
    markers. Done on pieces rather than with a regex around the marker because a pattern like
    ``\\n*TRIM`` backtracks quadratically over long runs of newlines."""
    if TRIM in text:
        parts = text.split(TRIM)
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i > 0:
                part = part.lstrip("\r\n")
            if i < last:
                part = part.rstrip("\r\n")
            parts[i] = part
        text = "".join(parts)
    return text.replace(NOOP, "") if NOOP in text else text


def trim_scoped(content: str) -> str:
    """A block body: trimmed, and the first non-empty line's indentation removed from every
    line (lines indented less lose all of theirs)."""
    lines = content.split("\n")
    base = 0
    for line in lines:
        bare = line.replace(NOOP, "")
        if bare.strip():
            base = len(bare) - len(bare.lstrip(" \t"))
            break
    if base == 0:
        return content.strip()
    out = []
    for line in lines:
        indent = len(line) - len(line.lstrip(" \t"))
        out.append(line[base:] if indent >= base else line.lstrip())
    return "\n".join(out).strip()


_FALSY = frozenset({"", "false", "0", "off", "no"})


def is_falsy(value: str) -> bool:
    return clean(value).strip().lower() in _FALSY


class Host(Protocol):
    """What handlers may use of the running expansion (implemented by the evaluator)."""

    ctx: MacroContext
    banned: list[str]

    def warn(self, message: str) -> None: ...
    def template(self, text: str) -> str: ...  # card/preset text: expanded here
    def random(self) -> Random: ...
    def pick(self, count: int, site: Site) -> int: ...
    def store(self, scope: str) -> MutableMapping[str, str]: ...
    def original(self) -> str: ...
    def budget(self) -> int: ...  # characters macros may still produce


Handler = Callable[[Host, list[str], Site], str]


@dataclass(frozen=True, slots=True)
class Spec:
    """A macro: its handler, how many arguments it takes (``max_args`` -1: a list) and
    whether it needs the injected clock (without one it is left as written)."""

    fn: Handler
    min_args: int = 0
    max_args: int = 0
    clock: bool = False


# --- random ------------------------------------------------------------------------------

_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def _items(args: list[str]) -> list[str]:
    if len(args) != 1:
        return args
    # the legacy one-argument form is a comma list; "\," is a literal comma
    return [part.replace("\\,", ",").strip() for part in _UNESCAPED_COMMA.split(args[0])]


def _random(host: Host, args: list[str], site: Site) -> str:
    items = _items(args)
    return items[host.random().randrange(len(items))]


def _pick(host: Host, args: list[str], site: Site) -> str:
    items = _items(args)
    return items[host.pick(len(items), site)]


_DIGITS = re.compile(r"[0-9]{1,12}")
_DICE = re.compile(r"([0-9]{0,12})[dD]([0-9]{1,12})([+-][0-9]{1,15})?")


def _roll(host: Host, args: list[str], site: Site) -> str:
    formula = clean(args[0]).strip()
    if _DIGITS.fullmatch(formula):
        formula = "1d" + formula  # a bare N is one N-sided die
    m = _DICE.fullmatch(formula)
    count = int(m.group(1) or "1") if m else 0
    sides = int(m.group(2)) if m else 0
    if m is None or count < 1 or sides < 1:
        host.warn(f"invalid dice formula {formula[:40]!r}")
        return ""
    limits = host.ctx.limits
    if count > limits.max_dice or sides > limits.max_sides:
        host.warn(f"dice over the limit ({limits.max_dice} dice of {limits.max_sides} sides)")
        return ""
    rng = host.random()
    total = sum(rng.randint(1, sides) for _ in range(count)) + int(m.group(3) or 0)
    return str(total)


# --- variables ---------------------------------------------------------------------------


def _var_macros(suffix: str, scope: str) -> dict[str, Spec]:
    def limit(host: Host) -> int:
        return host.ctx.limits.max_var_chars

    def refused(host: Host, name: str) -> str:
        host.warn(f"variable {name[:40]!r} not changed: over {limit(host)} characters")
        return ""

    def get(host: Host, args: list[str], site: Site) -> str:
        return clean(var_get(host.store(scope), args[0]))

    def set_(host: Host, args: list[str], site: Site) -> str:
        value = finish(args[1])
        return (
            ""
            if var_set(host.store(scope), args[0], value, limit(host))
            else refused(host, args[0])
        )

    def add(host: Host, args: list[str], site: Site) -> str:
        if var_add(host.store(scope), args[0], finish(args[1]), limit(host)) is None:
            return refused(host, args[0])
        return ""

    def step(by: float) -> Handler:
        def handler(host: Host, args: list[str], site: Site) -> str:
            value = var_add(host.store(scope), args[0], by, limit(host))
            return refused(host, args[0]) if value is None else clean(value)

        return handler

    def has(host: Host, args: list[str], site: Site) -> str:
        return "true" if args[0] in host.store(scope) else "false"

    def delete(host: Host, args: list[str], site: Site) -> str:
        host.store(scope).pop(args[0], None)
        return ""

    return {
        f"get{suffix}": Spec(get, 1, 1),
        f"set{suffix}": Spec(set_, 2, 2),
        f"add{suffix}": Spec(add, 2, 2),
        f"inc{suffix}": Spec(step(1.0), 1, 1),
        f"dec{suffix}": Spec(step(-1.0), 1, 1),
        f"has{suffix}": Spec(has, 1, 1),
        f"{suffix}exists": Spec(has, 1, 1),
        f"delete{suffix}": Spec(delete, 1, 1),
        f"flush{suffix}": Spec(delete, 1, 1),
    }


# --- text utilities ----------------------------------------------------------------------


def _repeat(char: str) -> Handler:
    def handler(host: Host, args: list[str], site: Site) -> str:
        count = js_number(clean(args[0])) if args else 1.0
        if count is None or count < 0 or count == float("inf"):
            host.warn(f"bad count {args[0][:20]!r}")
            return ""
        if count > host.budget():
            host.warn("repeat count over the output limit")
            return ""
        return char * int(count)

    return handler


def _banned(host: Host, args: list[str], site: Site) -> str:
    word = finish(args[0])
    word = word[1:] if word.startswith('"') else word  # legacy {{banned "word"}}
    word = word[:-1] if word.endswith('"') else word
    if word:
        host.banned.append(word)
    return ""


def utility_macros() -> dict[str, Spec]:
    """Random, dice, variables (local and global) and the text utilities."""
    table = {
        "random": Spec(_random, 1, -1),
        "pick": Spec(_pick, 1, -1),
        "roll": Spec(_roll, 1, 1),
        "newline": Spec(_repeat("\n"), 0, 1),
        "space": Spec(_repeat(" "), 0, 1),
        "noop": Spec(lambda h, a, s: NOOP),
        "trim": Spec(lambda h, a, s: a[-1] if a else TRIM, 0, 1),
        "reverse": Spec(lambda h, a, s: a[0][::-1], 1, 1),
        "banned": Spec(_banned, 1, 1),
        "else": Spec(lambda h, a, s: ""),  # only meaningful inside {{if}}
        "input": Spec(lambda h, a, s: ""),  # no input box on a server
    }
    table.update(_var_macros("var", "."))
    table.update(_var_macros("globalvar", "$"))
    return table
