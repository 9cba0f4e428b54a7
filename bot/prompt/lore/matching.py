"""Key matching: SillyTavern's rules, compiled once per book and key, and time-bounded.

A key is matched against a *haystack* (the scan buffer) exactly as ST's ``matchKeys`` does:

- ``/pattern/flags`` is a JavaScript regex, tested against the raw text (its own ``i`` flag
  decides case); an invalid one is plain text, as in ST;
- otherwise both sides are lower-cased unless case-sensitive; with whole-word matching a
  one-word key must stand between non-word characters (JavaScript's ASCII ``\\W``), a key with
  spaces is a plain substring; without it every key is a substring.

Speed: a one-word whole-word key made of word characters is a set lookup in the haystack's
word runs (the same test as ST's boundary regex, without running a regex per key); other keys
try a plain substring first. User regexes run on the third-party ``regex`` module with a
timeout, so a catastrophic pattern costs at most the configured time and counts as no match.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import regex

# JavaScript's WhiteSpace and LineTerminator: what String.prototype.trim() and \s remove
JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_WORD_RUN = re.compile(r"[A-Za-z0-9_]+")  # JS \w without the u flag is ASCII
_WORD_ONLY = re.compile(r"[A-Za-z0-9_]+\Z")
_JS_REGEX = re.compile(r"/([\s\S]+?)/([gimsuy]*)\Z")
_UNESCAPED_SLASH = re.compile(r"(?:^|[^\\])/")
_CACHE_LIMIT = 20_000  # compiled keys per book (macro-expanded keys vary per user name)


def js_trim(text: str) -> str:
    return text.strip(JS_SPACE)


def is_word(text: str) -> bool:
    """Only JavaScript word characters (ASCII letters, digits, underscore)."""
    return _WORD_ONLY.match(text) is not None


class Haystack:
    """One scan buffer, with its lower-cased form and word runs computed on first use."""

    __slots__ = ("_grams", "_lower", "_words", "_words_lower", "raw")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self._lower: str | None = None
        self._words: frozenset[str] | None = None
        self._words_lower: frozenset[str] | None = None
        self._grams: dict[tuple[bool, int], frozenset[str]] = {}

    def text(self, case_sensitive: bool) -> str:
        if case_sensitive:
            return self.raw
        if self._lower is None:
            self._lower = self.raw.lower()
        return self._lower

    def words(self, case_sensitive: bool) -> frozenset[str]:
        if case_sensitive:
            if self._words is None:
                self._words = frozenset(_WORD_RUN.findall(self.raw))
            return self._words
        if self._words_lower is None:
            self._words_lower = frozenset(_WORD_RUN.findall(self.text(False)))
        return self._words_lower

    def grams(self, case_sensitive: bool, n: int) -> frozenset[str]:
        """Every ``n``-character slice of the text (for the key index's prefilter)."""
        found = self._grams.get((case_sensitive, n))
        if found is None:
            text = self.text(case_sensitive)
            found = frozenset(text[i : i + n] for i in range(len(text) - n + 1))
            self._grams[(case_sensitive, n)] = found
        return found


class RegexClock:
    """The time left for user regexes in one activation, and the keys that ran out."""

    def __init__(self, per_key: float, total: float, trace: list[str]) -> None:
        self.per_key = max(per_key, 0.0)
        self.deadline = time.monotonic() + max(total, 0.0)
        self.failed: set[str] = set()
        self._trace = trace
        self._out_reported = False

    def search(self, key: str, pattern: Any, anchored: bool, text: str) -> bool:
        if key in self.failed:
            return False
        left = self.deadline - time.monotonic()
        if left <= 0:
            if not self._out_reported:
                self._trace.append("regex keys: time budget used up; further regex keys fail")
                self._out_reported = True
            return False
        try:
            found = (pattern.match if anchored else pattern.search)(
                text, timeout=min(self.per_key, left)
            )
        except TimeoutError:
            self.failed.add(key)
            self._trace.append(f"regex key {key[:80]!r} timed out: counted as no match")
            return False
        return found is not None


Matcher = Callable[[Haystack, RegexClock], bool]


def compile_key(
    cache: MutableMapping[tuple[str, bool, bool], Matcher],
    key: str,
    case_sensitive: bool,
    whole_words: bool,
) -> Matcher:
    """The matcher for an already macro-expanded, trimmed key (cached per book)."""
    ck = (key, case_sensitive, whole_words)
    found = cache.get(ck)
    if found is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        found = cache[ck] = _build(key, case_sensitive, whole_words)
    return found


def _build(key: str, case_sensitive: bool, whole_words: bool) -> Matcher:
    compiled = parse_js_regex(key)
    if compiled is not None:
        pattern, anchored = compiled
        return lambda h, clock: clock.search(key, pattern, anchored, h.raw)
    needle = key if case_sensitive else key.lower()
    if not needle:
        return lambda h, clock: True  # ST: a blank key matches everything
    if not whole_words or any(c in JS_SPACE for c in needle):
        return lambda h, clock: needle in h.text(case_sensitive)
    if is_word(needle):
        # equal to ST's (?:^|\W)key(?:$|\W): the key is exactly one maximal run of \w
        return lambda h, clock: needle in h.words(case_sensitive)
    bounded = re.compile(r"(?:^|\W)" + re.escape(needle) + r"(?:\Z|\W)", re.ASCII)

    def match(h: Haystack, clock: RegexClock) -> bool:
        text = h.text(case_sensitive)
        return needle in text and bounded.search(text) is not None

    return match


def parse_js_regex(key: str) -> tuple[Any, bool] | None:
    """``/pattern/flags`` as a compiled ``regex`` pattern and whether it is sticky (``y``).

    Follows ST's ``parseRegexFromString``: an unescaped ``/`` inside, unknown or repeated
    flags, or a pattern that does not compile make the key plain text.
    """
    m = _JS_REGEX.match(key)
    if m is None:
        return None
    body, flags = m.group(1), m.group(2)
    if _UNESCAPED_SLASH.search(body) or len(set(flags)) != len(flags):
        return None
    body = body.replace("\\/", "/", 1)  # ST unescapes only the first one; JS ignores the rest
    opts = regex.VERSION0
    if "i" in flags:
        opts |= regex.IGNORECASE
    if "m" in flags:
        opts |= regex.MULTILINE
    if "s" in flags:
        opts |= regex.DOTALL
    try:
        source = _translate(body, multiline="m" in flags, dotall="s" in flags, uni="u" in flags)
        return regex.compile(source, opts), "y" in flags
    except (regex.error, ValueError, OverflowError, RecursionError, IndexError):
        return None


_JS_ESCAPES = set("bBdDwWsStrnvf0123456789xup")  # escapes that mean the same in Python
_CLASS_CHARS = set("[&~|")  # literal in a JS class, set operators in some Python modes


def _translate(src: str, *, multiline: bool, dotall: bool, uni: bool) -> str:
    """Rewrite the JavaScript regex syntax that Python reads differently."""
    out: list[str] = []
    i, n = 0, len(src)
    in_class = False
    while i < n:
        c = src[i]
        if c == "\\":
            text, used = _escape(src, i, in_class, uni)
            out.append(text)
            i += used
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append("\\" + c if c in _CLASS_CHARS else c)
        elif c == "[":
            if src.startswith("[^]", i):  # JS: any character
                out.append(r"[\s\S]")
                i += 3
                continue
            if src.startswith("[]", i):  # JS: no character
                out.append("(?!)")
                i += 2
                continue
            in_class = True
            out.append("[")
            if src.startswith("[^", i):
                out.append("^")
                i += 1
        elif c == "$" and not multiline:
            out.append(r"\Z")  # JS $ is the very end; Python's also matches before a \n
        elif c == "." and not dotall:
            out.append(r"[^\n\r\u2028\u2029]")  # JS . stops at every line terminator
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _escape(src: str, i: int, in_class: bool, uni: bool) -> tuple[str, int]:
    """One JS escape at ``src[i]``: its Python spelling and how many characters it used."""
    if i + 1 >= len(src):
        raise ValueError("trailing backslash")
    nxt = src[i + 1]
    if nxt == "c" and i + 2 < len(src) and src[i + 2].isascii() and src[i + 2].isalpha():
        return f"\\x{ord(src[i + 2]) % 32:02x}", 3
    if nxt == "k" and not in_class and src.startswith("<", i + 2):
        end = src.index(">", i + 3)  # ValueError when unclosed: not a regex
        return f"(?P={src[i + 3 : end]})", end + 1 - i
    if nxt in "pP" and not uni:
        return nxt, 2  # \p{…} is a property only with the u flag
    if nxt in _JS_ESCAPES or not nxt.isalnum():
        return "\\" + nxt, 2
    return re.escape(nxt), 2  # JS reads an unknown escape as the letter itself
