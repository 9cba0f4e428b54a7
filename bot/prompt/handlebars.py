"""The Handlebars subset SillyTavern story strings use, rendered the way Handlebars renders.

Supported: ``{{name}}`` / ``{{{name}}}`` / ``{{& name}}`` variables (never HTML-escaped: ST
compiles with ``noEscape``), ``{{#if x}}…{{else}}…{{/if}}`` (also ``{{else if y}}`` and
``{{^}}``), ``{{#unless x}}``, comments ``{{! …}}`` / ``{{!-- … --}}``, ``\\{{`` escapes, the
``~`` whitespace controls and Handlebars' "standalone line" rule (a line holding only a block
tag or comment disappears with its line break). ``{{trim}}`` renders as the literal ``{{trim}}``
for the macro pass, exactly as SillyTavern's registered helper does. A mustache naming no
parameter goes to ``missing`` (ST's ``helperMissing`` hands it to the macro engine).

Templates are parsed once (:func:`compile_template`) and rendered many times; rendering is
linear in the template plus the output, so no template can hang a turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot.errors import ConfigError
from bot.prompt.handlebars_tree import (
    _Block,
    _Comment,
    _Content,
    _Mustache,
    _Program,
    _Strip,
    _Whitespace,
)

MAX_TEMPLATE = 200_000  # characters; a story string is a few hundred


class TemplateError(ConfigError):
    """A story string Handlebars cannot parse; ST would refuse it too."""

    hint = "fix the context template's story_string"


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed story string."""

    source: str
    root: _Program

    def render(
        self,
        params: Mapping[str, object],
        missing: Callable[[str], str],
        content: Callable[[str], str] = str,
    ) -> str:
        """Render with ``params``; ``missing(name)`` renders a mustache naming no parameter,
        ``content(text)`` post-processes literal template text (legacy ``<USER>`` tags)."""
        out: list[str] = []
        _render(self.root, params, missing, content, out)
        return "".join(out)


# -- lexing and parsing ------------------------------------------------------------------------

_TAG_END = re.compile(r"(~?)\}\}")
_PARAM = re.compile(r'"[^"]*"|\'[^\']*\'|[^\s]+')


@dataclass(slots=True)
class _Tag:
    kind: str  # "mustache", "open", "inverse-open", "close", "else", "comment"
    name: str
    params: tuple[str, ...]
    strip: _Strip


def compile_template(source: str) -> Template:
    """Parse ``source``; :class:`TemplateError` names what is wrong."""
    if len(source) > MAX_TEMPLATE:
        raise TemplateError(f"story_string: {len(source)} characters is over {MAX_TEMPLATE}")
    items = _lex(source)
    root, rest = _parse(items, 0, None)
    if rest != len(items):
        tag = items[rest]
        assert isinstance(tag, _Tag)
        raise TemplateError(f"story_string: unexpected {{{{{tag.kind} {tag.name}}}}}")
    _Whitespace().program(root)
    return Template(source, root)


def _lex(source: str) -> list[_Content | _Tag]:
    items: list[_Content | _Tag] = []
    text: list[str] = []
    pos = 0
    n = len(source)
    while pos < n:
        at = source.find("{{", pos)
        if at < 0:
            text.append(source[pos:])
            break
        if at > 0 and source[at - 1] == "\\" and not (at > 1 and source[at - 2] == "\\"):
            # ``\{{`` is a literal mustache: text up to the next one, backslash dropped
            text.append(source[pos : at - 1])
            nxt = source.find("{{", at + 2)
            end = n if nxt < 0 else nxt
            text.append(source[at:end])
            pos = end
            continue
        if at > 0 and source[at - 1] == "\\":  # ``\\{{``: one backslash, then a real tag
            text.append(source[pos : at - 1])
        else:
            text.append(source[pos:at])
        if text:
            joined = "".join(text)
            if joined:
                items.append(_Content(joined, joined))
            text = []
        tag, pos = _read_tag(source, at)
        items.append(tag)
    if text and (joined := "".join(text)):
        items.append(_Content(joined, joined))
    return items


def _read_tag(source: str, at: int) -> tuple[_Tag, int]:
    pos = at + 2
    strip = _Strip()
    if source.startswith("{", pos):  # triple-stash
        end = source.find("}}}", pos)
        if end < 0:
            raise TemplateError(f"story_string: unclosed {{{{{{ at {at}")
        body = source[pos + 1 : end]
        if body.startswith("~"):
            strip.open, body = True, body[1:]
        if body.endswith("~"):
            strip.close, body = True, body[:-1]
        name, params = _split(body, at)
        return _Tag("mustache", name, params, strip), end + 3
    if source.startswith("~", pos):
        strip.open = True
        pos += 1
    if source.startswith("!--", pos):
        end = source.find("--", pos + 3)
        close = _TAG_END.match(source, end + 2) if end >= 0 else None
        while end >= 0 and close is None:
            end = source.find("--", end + 1)
            close = _TAG_END.match(source, end + 2) if end >= 0 else None
        if close is None:
            raise TemplateError(f"story_string: unclosed comment at {at}")
        strip.close = close.group(1) == "~"
        return _Tag("comment", "", (), strip), close.end()
    close = _TAG_END.search(source, pos)
    if close is None:
        raise TemplateError(f"story_string: unclosed {{{{ at {at}")
    strip.close = close.group(1) == "~"
    body = source[pos : close.start()]
    end = close.end()
    if body.startswith("!"):
        return _Tag("comment", "", (), strip), end
    sigil = body[:1]
    if sigil in ("#", "/", "^", "&", ">"):
        body = body[1:]
    if sigil == ">":
        raise TemplateError(f"story_string: partials ({{{{>…}}}}) are not supported, at {at}")
    name, params = _split(body, at)
    if sigil == "#":
        return _Tag("open", name, params, strip), end
    if sigil == "/":
        return _Tag("close", name, params, strip), end
    if sigil == "^":
        return _Tag("else" if not name else "inverse-open", name, params, strip), end
    if name == "else" and sigil != "&":
        return _Tag("else", "else", params, strip), end
    return _Tag("mustache", name, params, strip), end


def _split(body: str, at: int) -> tuple[str, tuple[str, ...]]:
    parts = _PARAM.findall(body.strip())
    if not parts and body.strip():
        raise TemplateError(f"story_string: cannot read the tag at {at}")
    return (parts[0] if parts else ""), tuple(parts[1:])


def _parse(items: list[_Content | _Tag], i: int, closing: str | None) -> tuple[_Program, int]:
    """Parse a program until an ``{{else}}`` or the ``{{/closing}}`` tag (not consumed)."""
    program = _Program()
    while i < len(items):
        item = items[i]
        if isinstance(item, _Content):
            program.body.append(item)
            i += 1
            continue
        if item.kind in ("close", "else"):
            if closing is None:
                raise TemplateError(
                    f"story_string: {{{{{item.kind} {item.name}}}}} without a block"
                )
            return program, i
        if item.kind == "comment":
            program.body.append(_Comment(item.strip))
            i += 1
        elif item.kind == "mustache":
            program.body.append(_Mustache(item.name, item.params, item.strip))
            i += 1
        else:
            block, i = _parse_block(items, i)
            program.body.append(block)
    if closing is not None:
        raise TemplateError(f"story_string: {{{{#{closing}}}}} is never closed")
    return program, i


def _parse_block(
    items: list[_Content | _Tag], i: int, closing: str | None = None
) -> tuple[_Block, int]:
    """Parse one block; ``closing`` is the outer name an ``{{else if}}`` chain closes with."""
    tag = items[i]
    assert isinstance(tag, _Tag)
    if tag.kind == "inverse-open":  # ``{{^x}}…{{/x}}``
        helper, param = "^", tag.name
    elif tag.name in ("if", "unless"):
        helper = tag.name
        if len(tag.params) != 1:
            raise TemplateError(f"story_string: #{helper} takes exactly one value")
        param = tag.params[0]
    elif tag.name in ("each", "with", "lookup", "log") or tag.params:
        raise TemplateError(f"story_string: the block helper #{tag.name} is not supported")
    else:  # ``{{#x}}…{{/x}}``: a section on a value
        helper, param = "#", tag.name
    closing = closing or tag.name
    program, i = _parse(items, i + 1, closing)
    inverse: _Program | None = None
    inverse_strip = _Strip()
    end = items[i]
    assert isinstance(end, _Tag)
    if end.kind == "else":
        inverse_strip = end.strip
        if end.params and end.params[0] in ("if", "unless"):  # ``{{else if y}}`` chain
            chained = _Tag("open", end.params[0], end.params[1:], end.strip)
            nested, i = _parse_block([*items[:i], chained, *items[i + 1 :]], i, closing)
            inverse = _Program([nested], chained=True)
            block = _Block(
                helper, param, program, inverse, tag.strip, inverse_strip, nested.close_strip
            )
            return block, i
        inverse, i = _parse(items, i + 1, closing)
        end = items[i]
        assert isinstance(end, _Tag)
    if end.kind != "close" or end.name != closing:
        raise TemplateError(f"story_string: {{{{#{closing}}}}} closed by {{{{/{end.name}}}}}")
    return _Block(helper, param, program, inverse, tag.strip, inverse_strip, end.strip), i + 1


# -- rendering -----------------------------------------------------------------------------------


def _truthy(value: object) -> bool:
    # Handlebars' #if: false, undefined, null, "", 0 and [] are falsy
    if isinstance(value, (list, tuple)):
        return len(value) > 0
    return bool(value)


def _lookup(params: Mapping[str, object], name: str) -> object:
    if name.startswith(("'", '"')):
        return name[1:-1]
    if name in ("true", "false"):
        return name == "true"
    for prefix in ("this.", "./"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return params.get(name)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_show(v) for v in value)
    return str(value)


def _render(
    program: _Program,
    params: Mapping[str, object],
    missing: Callable[[str], str],
    content: Callable[[str], str],
    out: list[str],
) -> None:
    for node in program.body:
        if isinstance(node, _Content):
            if node.value:
                out.append(content(node.value))
        elif isinstance(node, _Mustache):
            if node.name == "trim":  # ST's helper: left for the macro pass to apply
                out.append("{{trim}}")
                continue
            value = None if node.params else _lookup(params, node.name)
            out.append(missing(node.name) if value is None else _show(value))
        elif isinstance(node, _Block):
            value = _lookup(params, node.param)
            if node.helper in ("#", "^"):
                # Handlebars' blockHelperMissing: only false and [] take the inverse; a
                # missing value is no exception, since ST's helperMissing turns it into text
                test = value is not False and value != [] and value != ()
                if node.helper == "^":
                    test = not test
            else:
                test = _truthy(value)
                if node.helper == "unless":
                    test = not test
            chosen = node.program if test else node.inverse
            if chosen is not None:
                _render(chosen, params, missing, content, out)
