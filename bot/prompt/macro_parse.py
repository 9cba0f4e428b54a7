"""Macro syntax: one linear pass from text to a tree of literal strings and macro calls.

The grammar is one superset of SillyTavern 1.12.6 and its newer macro engine::

    macro     "{{" flags? body "}}"        whitespace allowed around every part
    flags     any of  # / ! ? ~ >           "/" closes a block, "#" keeps a block's whitespace
    body      "//" anything                 a comment: removed
            | ("." | "$") var (op value)?   variable shorthand (local / global)
            | name (sep arg ("::" arg)*)?   sep is "::", legacy ":" or whitespace
    block     opener … "{{/name}}"          the body becomes the opener's last argument
    comment   "{{//}}" … "{{///}}"          removes everything between
    escape    "\\{" "\\}"                    a literal brace
    legacy    <USER> <BOT> <CHAR> <GROUP> <CHARIFNOTGROUP>   (any case)

Arguments may contain nested macros; they are split on ``::`` only in their literal text, so a
nested value never changes the structure. ``{{{`` opens at its last two braces (what a regex
for ``{{name}}`` would find). An unclosed ``{{`` and an unmatched ``{{/name}}`` stay literal
text. Nesting deeper than ``max_depth`` is literal text too: the parser keeps an explicit
stack, never recursion, and every position is looked at a bounded number of times.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

_SPECIAL = re.compile(r"[{}\\<]")
_LEGACY = re.compile(r"<(USER|BOT|CHAR|GROUP|CHARIFNOTGROUP)>", re.IGNORECASE)
_HEAD = re.compile(
    r"\s*(?P<flags>(?:[#/!?~>]\s*)*)"
    r"(?:(?P<scope>[.$])(?P<var>[A-Za-z](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)
_OPERATOR = re.compile(r"\s*(\|\|=|\?\?=|\+\+|--|\+=|-=|\|\||\?\?|==|!=|>=|<=|=|>|<)")
_LEGACY_UTC = re.compile(r"([+-]\d{1,6})\s*")  # {{time_UTC+2}}
_BLOCK_COMMENT_END = re.compile(r"\{\{\s*///\s*\}\}")
_SIMPLE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_FLAT = re.compile(r"\{\{([^{}\\<]*)\}\}")  # a macro with no braces, escapes or <…> inside


class Legacy:
    """An angle-bracket name such as ``<USER>``; ``key`` is lower case."""

    __slots__ = ("end", "key", "start")

    def __init__(self, key: str, start: int, end: int) -> None:
        self.key = key
        self.start = start
        self.end = end


class Call:
    """One ``{{…}}``. Spans index the source text the tree was parsed from.

    ``key`` is the lower-case name ("" when the inside is not a valid macro: it is then
    written back as is). ``inner`` is the whole inside, for writing it back. A variable
    shorthand has ``scope`` "." or "$", ``var`` and ``op``, and its value in ``args[0]``.
    A block opener has ``body``; ``close_start``/``close_end`` span its closing tag.
    """

    __slots__ = (
        "args",
        "body",
        "can_open",
        "close_end",
        "close_start",
        "closing",
        "end",
        "flags",
        "inner",
        "key",
        "op",
        "scope",
        "start",
        "var",
    )

    def __init__(self, start: int, end: int, inner: list[Node]) -> None:
        self.start = start
        self.end = end
        self.close_start = end
        self.close_end = end
        self.inner = inner
        self.flags = ""
        self.key = ""
        self.closing = False
        self.args: list[list[Node]] = []
        self.scope = ""
        self.var = ""
        self.op = ""
        self.body: list[Node] | None = None
        self.can_open = False


Node = str | Call | Legacy

# a closed {{…}} that turned out to be a comment; the block form waits for {{///}}
_COMMENT = object()
_BLOCK_COMMENT = object()


class _Frame:
    __slots__ = ("buf", "nodes", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.nodes: list[Node] = []
        self.buf: list[str] = []

    def flush(self) -> None:
        if self.buf:
            self.nodes.append("".join(self.buf))
            self.buf.clear()


class Tree(NamedTuple):
    """A parsed text. ``cut_at`` is the offset from which the text was kept as plain text
    because it held more than ``max_macros`` macros (-1: parsed to the end)."""

    nodes: list[Node]
    cut_at: int = -1


def parse(text: str, scoped: Mapping[str, int], max_depth: int, max_macros: int) -> Tree:
    """Parse ``text``. ``scoped`` maps the names that may open a block to the most arguments
    they take (-1: any number), so ``{{setvar x}}…{{/setvar}}`` pairs and ``{{if a::b}}``
    (already complete) does not. At most ``max_macros`` macros are parsed: no evaluation
    could run more, and it bounds the work for any input."""
    s = text
    frames = [_Frame(0)]
    no_close_from = len(s) + 1  # a {{///}} search from here on is known to fail
    made = 0
    cut_at = -1
    i = 0
    while True:
        if made >= max_macros and i < len(s):
            frames[-1].buf.append(s[i:])
            cut_at = i
            break
        top = frames[-1]
        m = _SPECIAL.search(s, i)
        if m is None:
            if i < len(s):
                top.buf.append(s[i:])
            break
        j = m.start()
        if j > i:
            top.buf.append(s[i:j])
        c = s[j]
        i = j + 1
        if c == "\\":
            nxt = s[j + 1 : j + 2]
            if nxt in ("{", "}") and nxt:
                top.buf.append(nxt)
                i = j + 2
            else:
                top.buf.append(c)
            continue
        if c == "<":
            legacy = _LEGACY.match(s, j)
            if legacy is None:
                top.buf.append(c)
            else:
                top.flush()
                top.nodes.append(Legacy(legacy.group(1).lower(), j, legacy.end()))
                i = legacy.end()
            continue
        if c == "{":
            if not s.startswith("{{", j) or s.startswith("{{{", j) or len(frames) > max_depth:
                top.buf.append(c)
                continue
            flat = _FLAT.match(s, j)
            if flat is None:  # something nested inside: collect it in a frame
                top.flush()
                frames.append(_Frame(j))
                i = j + 2
                continue
            i = flat.end()  # the common case, nothing inside: no frame needed
            inner = flat.group(1)
            node = _build(j, i, [inner] if inner else [], scoped)
        elif len(frames) > 1 and s.startswith("}}", j):
            frames.pop()
            top.flush()
            i = j + 2
            node = _build(top.start, i, _pair(top.nodes), scoped)
            top = frames[-1]
        else:
            top.buf.append(c)
            continue
        if node is _BLOCK_COMMENT and i < no_close_from:
            found = _BLOCK_COMMENT_END.search(s, i)
            if found is None:
                no_close_from = i
            else:
                i = found.end()
        elif isinstance(node, Call):
            made += 1
            top.flush()
            top.nodes.append(node)
    while len(frames) > 1:  # unclosed: the braces are text, what was inside stays parsed
        frame = frames.pop()
        frame.flush()
        parent = frames[-1]
        parent.buf.append("{{")
        for node in frame.nodes:
            if isinstance(node, str):
                parent.buf.append(node)
            else:
                parent.flush()
                parent.nodes.append(node)
    frames[0].flush()
    return Tree(_pair(frames[0].nodes), cut_at)


def _build(start: int, end: int, nodes: list[Node], scoped: Mapping[str, int]) -> Call | object:
    """Make the node for one closed ``{{…}}`` whose inside (already paired) is ``nodes``."""
    head = nodes[0] if nodes and isinstance(nodes[0], str) else ""
    simple = _SIMPLE.fullmatch(head) if len(nodes) == 1 else None
    if simple is not None:  # "{{user}}": by far the most common macro
        call = Call(start, end, nodes)
        call.key = simple.group(1).lower()
        call.can_open = scoped.get(call.key, 0) != 0
        return call
    stripped = head.lstrip()
    if stripped.startswith("//"):
        return _BLOCK_COMMENT if len(nodes) == 1 and stripped.rstrip() == "//" else _COMMENT
    call = Call(start, end, nodes)
    m = _HEAD.match(head)
    if m is None:
        return call
    rest = [head[m.end() :], *nodes[1:]]
    flags = m.group("flags")
    if m.group("scope"):
        _variable(call, m.group("scope"), m.group("var"), rest)
    else:
        _named(call, m.group("name"), rest)
    if call.key:
        call.flags = "".join(flags.split())
        call.closing = "/" in flags
        limit = scoped.get(call.key)
        call.can_open = (
            limit is not None
            and not call.closing
            and not call.scope
            and (limit < 0 or len(call.args) < limit)
        )
    return call


def _variable(call: Call, scope: str, var: str, rest: list[Node]) -> None:
    text = rest[0]
    assert isinstance(text, str)
    if not text.strip() and len(rest) == 1:
        op, value = "", rest
    else:
        m = _OPERATOR.match(text)
        if m is None:
            return
        op, value = m.group(1), [text[m.end() :], *rest[1:]]
        if op in ("++", "--") and (len(value) > 1 or str(value[0]).strip()):
            return
    call.key, call.scope, call.var, call.op = scope + var.lower(), scope, var, op
    call.args = [value]


def _named(call: Call, name: str, rest: list[Node]) -> None:
    text = rest[0]
    assert isinstance(text, str)
    key = name.lower()
    if key == "time_utc" and len(rest) == 1:  # legacy {{time_UTC+2}} = {{time::UTC+2}}
        m = _LEGACY_UTC.fullmatch(text)
        if m is not None:
            call.key, call.args = "time", [["UTC" + m.group(1)]]
        return
    if not text and len(rest) == 1:
        call.key = key
        return
    if not text or not (text[0].isspace() or text[0] == ":"):
        return  # "{{user's}}", "{{a.b}}", a macro glued to the name: not a macro
    text = text.lstrip()
    if text.startswith("::"):
        text = text[2:]
    elif text.startswith(":"):
        text = text[1:]
    elif not text and len(rest) == 1:
        call.key = key  # "{{ user }}"
        return
    call.key = key
    call.args = _split([text, *rest[1:]])


def _split(nodes: list[Node]) -> list[list[Node]]:
    """Split argument nodes on ``::`` in their literal text."""
    args: list[list[Node]] = [[]]
    for node in nodes:
        if isinstance(node, str):
            parts = node.split("::")
            for k, part in enumerate(parts):
                if k:
                    args.append([])
                if part:
                    args[-1].append(part)
        else:
            args[-1].append(node)
    return args


def _pair(nodes: list[Node]) -> list[Node]:
    """Match block openers with their ``{{/name}}`` in one sequence.

    A closer takes the nearest open candidate of its name; candidates opened after that one
    stay plain macros inside the body. Per-name stacks make each node move a bounded number
    of times, so adversarial runs of openers and closers stay linear.
    """
    if not any(isinstance(n, Call) and (n.can_open or n.closing) for n in nodes):
        return nodes
    out: list[Node] = []
    stack: list[int] = []  # positions in out of open candidates
    by_name: dict[str, list[int]] = {}  # name → indices into stack
    for node in nodes:
        if isinstance(node, Call) and node.closing:
            open_ = by_name.get(node.key)
            if open_:
                k = open_[-1]
                while len(stack) > k + 1:
                    inside = out[stack.pop()]
                    assert isinstance(inside, Call)
                    by_name[inside.key].pop()
                pos = stack.pop()
                open_.pop()
                opener = out[pos]
                assert isinstance(opener, Call)
                opener.body = out[pos + 1 :]
                del out[pos + 1 :]
                opener.close_start, opener.close_end = node.start, node.end
                continue
        elif isinstance(node, Call) and node.can_open:
            by_name.setdefault(node.key, []).append(len(stack))
            stack.append(len(out))
        out.append(node)
    return out


class ParseCache:
    """Trees of recently parsed texts, least recently used out first.

    Card and preset text is expanded again on every turn; parsing is most of the cost, and
    trees are never changed after parsing, so they can be shared. The owner (the app) makes
    one and passes it in :class:`bot.prompt.macro_env.MacroContext`; texts longer than
    ``max_text`` are not kept.
    """

    def __init__(self, max_entries: int = 1024, max_text: int = 262_144) -> None:
        self._max_entries = max_entries
        self._max_text = max_text
        self._trees: dict[tuple[str, int, int], Tree] = {}

    def parse(self, text: str, scoped: Mapping[str, int], max_depth: int, max_macros: int) -> Tree:
        key = (text, max_depth, max_macros)
        tree = self._trees.pop(key, None)
        if tree is None:
            tree = parse(text, scoped, max_depth, max_macros)
            if len(text) > self._max_text:
                return tree
            if len(self._trees) >= self._max_entries:
                del self._trees[next(iter(self._trees))]
        self._trees[key] = tree  # re-inserted: now the most recently used
        return tree
