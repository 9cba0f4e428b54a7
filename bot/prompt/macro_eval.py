"""Evaluate a parsed macro tree: inner macros first, then the macro itself; bounded throughout.

One :class:`Evaluator` lives for one ``expand`` call. It counts macro evaluations, nesting
depth and the characters macros produce; past a limit the macro (and, for steps and size,
everything after it) is written back exactly as in the source, so a bomb ends quickly with
text that shows where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import MutableMapping
from random import Random

from bot.prompt.macro_env import MacroContext
from bot.prompt.macro_lib import Site, clean, finish, is_falsy, trim_scoped
from bot.prompt.macro_parse import Call, Legacy, Node, Tree, parse
from bot.prompt.macro_table import MACROS, SCOPED
from bot.prompt.macro_vars import js_number, var_add, var_get, var_set

log = logging.getLogger(__name__)

_SHORTHAND = re.compile(r"([.$])([A-Za-z](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)")
_COMPARE = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


class Evaluator:
    """Expands text for one context (the :class:`bot.prompt.macro_lib.Host` of handlers)."""

    def __init__(self, ctx: MacroContext) -> None:
        self.ctx = ctx
        self.limits = ctx.limits
        self.banned: list[str] = []
        self._warnings: dict[str, None] = {}  # an ordered set
        self._extra = {k.lower(): v for k, v in ctx.extra.items()}
        self._local = ctx.local_vars if ctx.local_vars is not None else {}
        self._global = ctx.global_vars if ctx.global_vars is not None else {}
        self._rng = ctx.rng
        self._steps = 0
        self._produced = 0
        self._depth = 0
        self._stopped = False
        self._original_used = False
        self._trees: dict[str, Tree] = {}
        self._digests: dict[str, bytes] = {}

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self._warnings)

    def run(self, text: str) -> str:
        return finish(self._source(clean(text)))

    # --- Host ----------------------------------------------------------------------------

    def warn(self, message: str) -> None:
        self._warnings[message] = None

    def template(self, text: str) -> str:
        text = clean(text)
        if "{" not in text and "}" not in text and "<" not in text:
            return text
        return self._source(text)

    def random(self) -> Random:
        if self._rng is None:
            self._rng = Random()  # system-seeded; tests inject their own
        return self._rng

    def pick(self, count: int, site: Site) -> int:
        src, offset = site
        digest = self._digests.get(src)
        if digest is None:
            digest = self._digests[src] = hashlib.sha256(
                src.encode("utf-8", "surrogatepass")
            ).digest()
        seed = "\0".join((self.ctx.chat_id, self.ctx.pick_seed, digest.hex(), str(offset)))
        value = int.from_bytes(hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()[:8])
        return value % count

    def store(self, scope: str) -> MutableMapping[str, str]:
        return self._local if scope == "." else self._global

    def original(self) -> str:
        # SillyTavern substitutes the overridden prompt once; later copies are empty
        if self._original_used:
            return ""
        self._original_used = True
        return clean(self.ctx.original)

    def budget(self) -> int:
        return self.limits.max_output - self._produced

    # --- tree walking ----------------------------------------------------------------------

    def _source(self, text: str) -> str:
        tree = self._trees.get(text)
        if tree is None:
            limits, cache = self.limits, self.ctx.cache
            if cache is not None:
                tree = cache.parse(text, SCOPED, limits.max_depth, limits.max_steps)
            else:
                tree = parse(text, SCOPED, limits.max_depth, limits.max_steps)
            self._trees[text] = tree
        if tree.cut_at >= 0:
            self.warn(f"over {self.limits.max_steps} macros in one text; the rest left as written")
        return self._nodes(tree.nodes, text)

    def _nodes(self, nodes: list[Node], src: str) -> str:
        parts: list[str] = []
        for node in nodes:
            if isinstance(node, str):
                parts.append(node)
            elif isinstance(node, Call):
                parts.append(self._call(node, src))
            else:
                parts.append(self._legacy(node, src))
        return "".join(parts)

    def _stop(self, why: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.warn(f"macro expansion stopped: {why}; the rest is left as written")
        log.warning("macro expansion stopped: %s", why)

    def _count(self, value: str) -> bool:
        """Charge ``value`` to the output budget; ``False`` when it is over."""
        self._produced += len(value)
        if self._produced > self.limits.max_output:
            self._stop(f"macros produced over {self.limits.max_output} characters")
            return False
        return True

    def _legacy(self, node: Legacy, src: str) -> str:
        if self._stopped:
            return src[node.start : node.end]
        ctx = self.ctx
        if node.key == "user":
            value = ctx.user
        elif node.key in ("bot", "char"):
            value = ctx.char
        else:  # <GROUP> and <CHARIFNOTGROUP> are both the member list, as in SillyTavern
            value = ", ".join(ctx.group) if ctx.group else ctx.char
        value = clean(value)
        return value if self._count(value) else src[node.start : node.end]

    def _call(self, c: Call, src: str) -> str:
        if self._stopped:
            return src[c.start : c.close_end]
        self._steps += 1
        if self._steps > self.limits.max_steps:
            self._stop(f"more than {self.limits.max_steps} macros")
            return src[c.start : c.close_end]
        if self._depth >= self.limits.max_depth:
            self.warn(f"macros nested deeper than {self.limits.max_depth} left as written")
            return src[c.start : c.close_end]
        self._depth += 1
        try:
            value = self._dispatch(c, src)
        finally:
            self._depth -= 1
        return value if self._count(value) else src[c.start : c.close_end]

    def _dispatch(self, c: Call, src: str) -> str:
        if not c.key or c.closing:
            return self._verbatim(c, src)
        if c.scope:
            return self._variable(c, src)
        if c.key == "if":
            return self._if(c, src)
        count = len(c.args) + (c.body is not None)
        if count == 0 and c.key in self._extra:
            return clean(self._extra[c.key])
        spec = MACROS.get(c.key)
        if (
            spec is None
            or (spec.clock and self.ctx.now is None)
            or count < spec.min_args
            or 0 <= spec.max_args < count
        ):
            return self._verbatim(c, src)
        args = [self._nodes(a, src).strip() for a in c.args]
        if c.body is not None:
            body = self._nodes(c.body, src)
            args.append(body if "#" in c.flags else trim_scoped(body))
        if self._stopped:  # an argument hit a limit: no side effect from half-expanded text
            return src[c.start : c.close_end]
        return spec.fn(self, args, (src, c.start))

    def _verbatim(self, c: Call, src: str) -> str:
        """An unknown or malformed macro: written back, with the macros inside it expanded."""
        out = "{{" + self._nodes(c.inner, src) + "}}"
        if c.body is not None:
            out += self._nodes(c.body, src) + src[c.close_start : c.close_end]
        return out

    # --- control flow and variables ----------------------------------------------------------

    def _if(self, c: Call, src: str) -> str:
        if c.body is not None and len(c.args) == 1:
            content = c.body
        elif c.body is None and len(c.args) == 2:
            content = c.args[1]
        else:
            return self._verbatim(c, src)
        negate, value = self._condition(c.args[0], src, c)
        if self._stopped:
            return src[c.start : c.close_end]
        chosen, other = _split_else(content)
        branch = other if is_falsy(value) != negate else chosen
        if branch is None:
            return ""
        result = self._nodes(branch, src)  # only the chosen branch is evaluated
        return result if "#" in c.flags else trim_scoped(result)

    def _condition(self, nodes: list[Node], src: str, c: Call) -> tuple[bool, str]:
        """``!`` negates; a bare macro name or ``.var``/``$var`` is looked up; anything
        else is expanded and taken as text."""
        nodes = list(nodes)
        negate = False
        if nodes and isinstance(nodes[0], str) and nodes[0].lstrip().startswith("!"):
            negate = True
            nodes[0] = nodes[0].lstrip()[1:].lstrip()
        if len(nodes) != 1 or not isinstance(nodes[0], str):
            return negate, self._nodes(nodes, src)
        word = nodes[0].strip()
        m = _SHORTHAND.fullmatch(word)
        if m is not None:
            return negate, var_get(self.store(m.group(1)), m.group(2))
        key = word.lower()
        if key in self._extra:
            return negate, self._extra[key]
        spec = MACROS.get(key)
        if spec is None or spec.min_args or (spec.clock and self.ctx.now is None):
            return negate, word
        value = spec.fn(self, [], (src, c.start))
        self._count(value)
        return negate, value

    def _variable(self, c: Call, src: str) -> str:
        store, name, op = self.store(c.scope), c.var, c.op
        limit = self.limits.max_var_chars
        current = var_get(store, name)
        if op == "":
            return clean(current)
        if op in ("++", "--"):
            new = var_add(store, name, 1.0 if op == "++" else -1.0, limit)
            return self._refused(name) if new is None else clean(new)
        if op in ("||", "??", "||=", "??="):  # the fallback is evaluated only when needed
            keep = name in store if op.startswith("??") else not is_falsy(current)
            if keep:
                return clean(current)
            value = finish(self._nodes(c.args[0], src).strip())
            if self._stopped:
                return src[c.start : c.end]
            if op.endswith("=") and not var_set(store, name, value, limit):
                return self._refused(name)
            return value
        value = self._nodes(c.args[0], src).strip()
        if self._stopped:
            return src[c.start : c.end]
        if op == "=":
            return "" if var_set(store, name, finish(value), limit) else self._refused(name)
        if op == "+=":
            if var_add(store, name, finish(value), limit) is None:
                self._refused(name)
            return ""
        if op == "-=":
            number = js_number(clean(value))
            if number is None:
                self.warn(f"{c.scope}{name} -= {value[:20]!r}: not a number")
            elif var_add(store, name, -number, limit) is None:
                self._refused(name)
            return ""
        if op in ("==", "!="):
            return str((clean(current) == clean(value)) == (op == "==")).lower()
        left, right = js_number(current), js_number(clean(value))
        if left is None or right is None:
            return "false"
        return str(_COMPARE[op](left, right)).lower()

    def _refused(self, name: str) -> str:
        self.warn(f"variable {name[:40]!r} not changed: over {self.limits.max_var_chars} chars")
        return ""


def _split_else(nodes: list[Node]) -> tuple[list[Node], list[Node] | None]:
    """Split a body on its first top-level ``{{else}}`` (nested ifs are already blocks)."""
    for i, node in enumerate(nodes):
        if isinstance(node, Call) and node.key == "else" and not node.closing:
            return nodes[:i], nodes[i + 1 :]
    return nodes, None
