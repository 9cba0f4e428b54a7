"""SillyTavern regex scripts (the Regex extension): its file format, and running scripts where
SillyTavern runs them — on user input, AI output, slash commands, world info and reasoning,
for the stored chat, the outgoing prompt only, or the display only.

Patterns are JavaScript regular expressions (``/pattern/flags``); they are translated to the
third-party ``regex`` module where the two differ (``$`` is end of text, ``.`` stops at any
line break, ``\\d``/``\\w``/``\\b`` are ASCII, ``[^]``, ``\\k<name>``), and every run has a time
bound and an output cap: a script that exceeds either is skipped and logged, so a catastrophic
pattern cannot hang a channel.

One deliberate difference: macros in the replacement are expanded *before* the captured text is
inserted (SillyTavern expands after), so text typed by users is never macro-expanded.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import regex

from bot.errors import ConfigError
from bot.prompt.cards.model import Character

log = logging.getLogger(__name__)

Macros = Callable[[str], str]

DEFAULT_TIMEOUT = 0.25  # seconds per script run
MAX_OUTPUT_CHARS = 1_000_000
MAX_PATTERN_CHARS = 10_000
MAX_SCRIPTS_BYTES = 4 * 1024 * 1024

# SillyTavern's regexFromString: optional slashes around the pattern, then letters as flags
_FIND = re.compile(r"(/?)([^\n\r\u2028\u2029]+)\1([a-z]*)", re.IGNORECASE)
_SANE_FLAGS = re.compile(r"^(?!.*?(.).*?\1)[gmixXsuUAJ]+$")  # else the whole text is a pattern
_GROUP_REF = re.compile(r"\$(\d+)")
_MATCH_MACRO = re.compile(r"\{\{match\}\}", re.IGNORECASE)
_MACRO = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_ANY_LINE_CHAR = r"[^\n\r\u2028\u2029]"


class RegexScriptError(ConfigError):
    hint = "use a regex script exported by SillyTavern's Regex extension"


class RegexPlacement(enum.IntEnum):
    """Where a script runs (SillyTavern's stored numbers)."""

    MD_DISPLAY = 0  # deprecated in SillyTavern
    USER_INPUT = 1
    AI_OUTPUT = 2
    SLASH_COMMAND = 3
    WORLD_INFO = 5
    REASONING = 6


class SubstituteRegex(enum.IntEnum):
    """Whether macros in the pattern are expanded first (1.12 stored a boolean)."""

    NONE = 0
    RAW = 1
    ESCAPED = 2  # macro values are matched literally


class _TooLong(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RegexScript:
    """One script. ``problem`` says why it can never run (a pattern JavaScript would reject);
    such a script is kept, so exports give it back, but skipped."""

    name: str
    find: str
    replace: str = ""
    trim_strings: tuple[str, ...] = ()
    placement: frozenset[int] = frozenset()
    disabled: bool = False
    markdown_only: bool = False
    prompt_only: bool = False
    run_on_edit: bool = False
    substitute: SubstituteRegex = SubstituteRegex.NONE
    min_depth: int | None = None
    max_depth: int | None = None
    id: str = ""
    problem: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    compiled: Any = field(default=None, compare=False, repr=False)  # regex.Pattern, or None
    replace_all: bool = False  # the JavaScript "g" flag

    def to_dict(self) -> dict[str, Any]:
        """The script in SillyTavern's file format (fields we do not model kept)."""
        return {
            **self.raw,
            "id": self.id,
            "scriptName": self.name,
            "findRegex": self.find,
            "replaceString": self.replace,
            "trimStrings": list(self.trim_strings),
            "placement": sorted(self.placement),
            "disabled": self.disabled,
            "markdownOnly": self.markdown_only,
            "promptOnly": self.prompt_only,
            "runOnEdit": self.run_on_edit,
            "substituteRegex": int(self.substitute),
            "minDepth": self.min_depth,
            "maxDepth": self.max_depth,
        }


# -- loading --------------------------------------------------------------------------------------


def load_scripts(data: bytes | str | list[Any] | dict[str, Any], source: str) -> list[RegexScript]:
    """Scripts from a SillyTavern export: one script object, or a list of them (as in a
    card's ``extensions.regex_scripts`` or ``settings.json``'s ``extension_settings.regex``)."""
    obj: Any = data
    if isinstance(data, bytes | str):
        if len(data) > MAX_SCRIPTS_BYTES:
            raise RegexScriptError(f"{source}: over {MAX_SCRIPTS_BYTES // 1024 // 1024} MiB")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise RegexScriptError(f"{source}: not valid JSON ({exc})") from None
    if isinstance(obj, dict):
        return [_script(obj, source)]
    if not isinstance(obj, list):
        raise RegexScriptError(f"{source}: expected a script object or a list of them")
    return [_script(item, f"{source}: [{i}]") for i, item in enumerate(obj)]


def scripts_from_card(character: Character) -> list[RegexScript]:
    """The card's scoped scripts (SillyTavern runs them only if the user allowed that card)."""
    found = character.extensions.get("regex_scripts")
    if found is None:
        return []
    return load_scripts(found, f"{character.name}: extensions.regex_scripts")


def _script(obj: Any, where: str) -> RegexScript:
    if not isinstance(obj, dict):
        raise RegexScriptError(f"{where}: expected a script object")
    find = _text(obj, "findRegex", where)
    if len(find) > MAX_PATTERN_CHARS:
        raise RegexScriptError(f"{where}: findRegex: over {MAX_PATTERN_CHARS} characters")
    trims = obj.get("trimStrings") or []
    if not isinstance(trims, list) or not all(isinstance(t, str) for t in trims):
        raise RegexScriptError(f"{where}: trimStrings: expected a list of text")
    placement = obj.get("placement") or []
    if not isinstance(placement, list) or not all(_is_int(p) for p in placement):
        raise RegexScriptError(f"{where}: placement: expected a list of numbers")
    substitute = obj.get("substituteRegex", 0)
    if not (isinstance(substitute, int) and substitute in (0, 1, 2)):  # 1.12 stored a bool
        raise RegexScriptError(f"{where}: substituteRegex: expected 0, 1, 2 or true/false")
    script = RegexScript(
        name=_text(obj, "scriptName", where),
        find=find,
        replace=_text(obj, "replaceString", where),
        trim_strings=tuple(trims),
        placement=frozenset(int(p) for p in placement),
        disabled=_flag(obj, "disabled", where),
        markdown_only=_flag(obj, "markdownOnly", where),
        prompt_only=_flag(obj, "promptOnly", where),
        run_on_edit=_flag(obj, "runOnEdit", where),
        substitute=SubstituteRegex(int(substitute)),
        min_depth=_depth(obj.get("minDepth"), f"{where}: minDepth"),
        max_depth=_depth(obj.get("maxDepth"), f"{where}: maxDepth"),
        id=str(obj.get("id") or ""),
        raw=obj,
    )
    if script.substitute is not SubstituteRegex.NONE or not find:
        return script  # compiled per run (macros change), or never run
    try:
        compiled, replace_all = compile_js(find)
    except ValueError as exc:
        log.warning("regex script %s (%s) will not run: %s", script.name, where, exc)
        return replace(script, problem=str(exc))
    return replace(script, compiled=compiled, replace_all=replace_all)


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RegexScriptError(f"{where}: {key}: expected text")
    return value


def _flag(obj: dict[str, Any], key: str, where: str) -> bool:
    value = obj.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RegexScriptError(f"{where}: {key}: expected true or false")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _depth(value: Any, where: str) -> int | None:
    """A depth limit; SillyTavern treats null, "", NaN and negatives as "no limit"."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value):
        raise RegexScriptError(f"{where}: expected a whole number or null")
    return None if value < 0 else int(value)


# -- JavaScript patterns --------------------------------------------------------------------------


def compile_js(find: str) -> tuple[Any, bool]:
    """``/pattern/flags`` as SillyTavern reads it, compiled; and whether "g" was given.

    Raises ValueError (with the reason) where JavaScript would refuse the pattern.
    """
    m = _FIND.search(find)
    if m is None:
        raise ValueError("empty pattern")
    pattern, flags = m.group(2), m.group(3)
    if flags and not _SANE_FLAGS.match(flags):
        pattern, flags = find, ""  # SillyTavern then uses the whole text as the pattern
    options = regex.VERSION0
    for flag in flags:
        if flag in "xXUAJ":
            raise ValueError(f"flag {flag!r} is not a JavaScript flag")
        options |= {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL}.get(flag, 0)
    source = _js_to_python(pattern, multiline="m" in flags, dotall="s" in flags)
    try:
        return regex.compile(source, options), "g" in flags
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise ValueError(f"invalid pattern: {exc}") from None


def _js_to_python(pattern: str, *, multiline: bool, dotall: bool) -> str:
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            end = pattern.find(">", i + 3)
            if nxt == "k" and not in_class and pattern.startswith("<", i + 2) and end > 0:
                out.append(f"(?P={pattern[i + 3 : end]})")
                i = end + 1
                continue
            if in_class:
                out.append({"d": "0-9", "w": "A-Za-z0-9_", "b": "\\x08"}.get(nxt, c + nxt))
            elif nxt in "dDwWbB":
                out.append(f"(?a:\\{nxt})")  # JavaScript's classes and boundaries are ASCII
            else:
                out.append(nxt if nxt in "AZ" else c + nxt)  # \A and \Z are plain letters in JS
            i += 2
            continue
        if in_class:
            in_class = c != "]"
            out.append(c if c != "[" else "\\[")
        elif pattern.startswith("[^]", i):
            out.append(r"[\s\S]")
            i += 3
            continue
        elif pattern.startswith("[]", i):
            out.append("(?!)")  # JavaScript's empty class matches nothing
            i += 2
            continue
        elif c == "[":
            in_class = True
            out.append(c)
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
        elif c == "$" and not multiline:
            out.append(r"\Z")  # Python's $ also matches before a final newline
        elif c == "." and not dotall:
            out.append(_ANY_LINE_CHAR)
        else:
            out.append(c)
        i += 1
    return "".join(out)


# -- running --------------------------------------------------------------------------------------


def apply_scripts(
    text: str,
    scripts: Iterable[RegexScript],
    placement: int,
    *,
    depth: int | None = None,
    for_prompt: bool = False,
    for_display: bool = False,
    on_edit: bool = False,
    macros: Macros | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Run, in order, the scripts that apply to ``placement`` and this use of the text.

    ``depth`` counts messages from the newest (0 = last) for the min/max depth filter;
    ``for_prompt`` is the outgoing prompt (prompt-only scripts run), ``for_display`` the text
    shown to users (display-only scripts run; the others already changed the stored text);
    ``on_edit`` runs only scripts marked to run on edits. ``macros`` expands macros in the
    replacement, trim strings and (if asked) the pattern.
    """
    for script in scripts:
        if on_edit and not script.run_on_edit:
            continue
        wanted = (
            (script.markdown_only and for_display)
            or (script.prompt_only and for_prompt)
            or (not script.markdown_only and not script.prompt_only and not for_display)
        )
        if not wanted or placement not in script.placement or not _in_depth(script, depth):
            continue
        text = run_script(script, text, macros=macros, timeout=timeout)
    return text


def _in_depth(script: RegexScript, depth: int | None) -> bool:
    if depth is None or depth < 0:
        return True
    if script.min_depth is not None and depth < script.min_depth:
        return False
    return script.max_depth is None or depth <= script.max_depth


def run_script(
    script: RegexScript,
    text: str,
    *,
    macros: Macros | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """One script on ``text``; ``text`` unchanged if it cannot run, times out or overflows."""
    if script.disabled or not script.find or not text or script.problem:
        return text
    expand = macros or (lambda s: s)
    pattern, replace_all = script.compiled, script.replace_all
    if pattern is None:
        try:
            pattern, replace_all = compile_js(_substituted(script, expand))
        except ValueError as exc:
            log.warning("regex script %s skipped: %s", script.name, exc)
            return text
    template = expand(_MATCH_MACRO.sub("$0", script.replace))
    trims = [t for t in (expand(s) for s in script.trim_strings) if t]
    budget = [MAX_OUTPUT_CHARS - len(text)]

    def replacement(match: Any) -> str:
        def group(ref: re.Match[str]) -> str:
            index = int(ref.group(1))
            value = match.group(index) if index <= len(match.groups()) else None
            for trim in trims:
                value = value.replace(trim, "") if value else value
            return value or ""

        out: str = _GROUP_REF.sub(group, template)
        budget[0] -= len(out) - len(match.group(0))
        if budget[0] < 0:
            raise _TooLong
        return out

    try:
        result: str = pattern.sub(
            replacement, text, count=0 if replace_all else 1, timeout=timeout
        )
    except TimeoutError:
        log.warning("regex script %s skipped: it ran over %.2f s", script.name, timeout)
        return text
    except _TooLong:
        log.warning(
            "regex script %s skipped: its output ran over %d chars", script.name, MAX_OUTPUT_CHARS
        )
        return text
    return result


def _substituted(script: RegexScript, expand: Macros) -> str:
    if script.substitute is SubstituteRegex.RAW:
        return expand(script.find)
    # ESCAPED: each macro's value is matched literally
    return _MACRO.sub(lambda m: regex.escape(expand(m.group(0))), script.find)


def scripts_to_json(scripts: Sequence[RegexScript]) -> bytes:
    """Scripts as a SillyTavern-importable JSON list."""
    return json.dumps([s.to_dict() for s in scripts], ensure_ascii=False, indent=4).encode()
