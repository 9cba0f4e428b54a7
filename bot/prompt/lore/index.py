"""A per-book key index, so a pass looks only at entries whose keys can possibly match.

SillyTavern tests every key of every entry against the scan text on every pass. Most keys are
plain words, and a plain key can only match if it appears in the text, so the index maps:

- a whole-word key made of word characters to that word (it matches exactly when the word is
  one of the text's word runs — the same test the matcher makes);
- any other plain key of 3+ characters to one of its trigrams, the rarest in the book (a
  substring match needs every one of them);

and keeps the rest in ``always``: regex keys, keys with macros, short keys, entries that scan
their own depth or extra sources, constant entries and entries with decorators. A pass then
checks ``always`` plus the entries the text's words and trigrams point at, in ST's order, with
the full rules — the index only skips entries that could not have matched anyway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.prompt.lore.matching import Haystack, is_word, js_trim, parse_js_regex
from bot.prompt.lore.model import Lorebook, LoreEntry, LoreSettings

_GRAM = 3


@dataclass
class BookIndex:
    """Entry positions (in ``book.entries``) by what their keys need to see."""

    always: list[int] = field(default_factory=list)
    words: dict[tuple[bool, str], list[int]] = field(default_factory=dict)  # (case, word)
    grams: dict[tuple[bool, str], list[int]] = field(default_factory=dict)  # (case, trigram)
    word_cases: frozenset[bool] = frozenset()  # which case modes the tables use
    gram_cases: frozenset[bool] = frozenset()

    def hits(self, hay: Haystack) -> set[int]:
        """Positions of entries that may match ``hay`` (plus the ``always`` ones)."""
        found = set(self.always)
        for case in self.word_cases:
            words = self.words
            for word in hay.words(case):
                found.update(words.get((case, word), ()))
        for case in self.gram_cases:
            text = hay.text(case)
            # a few trigrams: C-speed substring tests; many: one set of the text's trigrams
            many = len(self.grams) * 64 > len(text)
            grams = hay.grams(case, _GRAM) if many else None
            for (gram_case, gram), positions in self.grams.items():
                if gram_case == case and (gram in grams if grams is not None else gram in text):
                    found.update(positions)
        return found


def book_index(book: Lorebook, settings: LoreSettings) -> BookIndex:
    """The index for ``book`` under these global case/whole-word settings (cached on it)."""
    key = ("index", settings.case_sensitive, settings.match_whole_words)
    found = book.matchers.get(key)
    if not isinstance(found, BookIndex):
        found = book.matchers[key] = _build(book.entries, settings)
    return found


def _build(entries: Iterable[LoreEntry], settings: LoreSettings) -> BookIndex:
    index = BookIndex()
    planned = [(pos, _needs(entry, settings)) for pos, entry in enumerate(entries)]
    # A substring key can only match where every one of its trigrams appears, so any one of
    # them will do as its filter: take the rarest across the book's keys, so that common
    # openings ("the", "har…") do not send every entry to the full check.
    seen: Counter[tuple[bool, str]] = Counter()
    for _, needs in planned:
        for kind, case, token in needs or ():
            if kind == "gram":
                seen.update({(case, token[i : i + _GRAM]) for i in range(len(token) - 2)})
    for pos, needs in planned:
        if needs is None:
            index.always.append(pos)
            continue
        for kind, case, token in needs:
            if kind == "word":
                index.words.setdefault((case, token), []).append(pos)
                continue
            grams = [token[i : i + _GRAM] for i in range(len(token) - 2)]
            rarest = min(grams, key=lambda g: seen[(case, g)])
            index.grams.setdefault((case, rarest), []).append(pos)
    index.word_cases = frozenset(c for c, _ in index.words)
    index.gram_cases = frozenset(c for c, _ in index.grams)
    return index


def _needs(entry: LoreEntry, settings: LoreSettings) -> list[tuple[str, bool, str]] | None:
    """What each primary key needs to appear, or None when the entry must always be checked."""
    special = (
        entry.constant
        or entry.decorators
        or entry.scan_depth is not None
        or entry.match_persona_description
        or entry.match_character_description
        or entry.match_character_personality
        or entry.match_character_depth_prompt
        or entry.match_scenario
        or entry.match_creator_notes
    )
    if special or not entry.key:
        return None if special else []  # no keys and nothing special: it never activates
    case = entry.case_sensitive if entry.case_sensitive is not None else settings.case_sensitive
    whole = (
        entry.match_whole_words
        if entry.match_whole_words is not None
        else settings.match_whole_words
    )
    needs = []
    for raw in entry.key:
        if "{{" in raw or "<" in raw or parse_js_regex(js_trim(raw)) is not None:
            return None
        if not raw:
            continue  # an empty key never matches
        needle = js_trim(raw)
        needle = needle if case else needle.lower()
        if whole and is_word(needle):
            needs.append(("word", case, needle))
        elif len(needle) >= _GRAM:
            needs.append(("gram", case, needle))  # _build picks the filter trigram
        else:
            return None  # blank or short keys: check every time
    return needs
