"""The activation loop: SillyTavern 1.12.6's ``checkWorldInfo``, step by step.

1. entries of every book, sorted (chat, persona, then character/global by strategy; each by
   ``order`` descending); timers checked; budget = round(budget% × max_context) (≥1, capped);
2. passes (initial, recursion, min-activations) over the entries not yet decided: the skip
   cascade, then forced activations (@@activate, constant, sticky), then primary keys and
   secondary keys; new candidates sorted sticky-first, inclusion groups, probability rolls,
   and the token budget (``tokens(lore so far) + tokens(new contents) >= budget`` stops it,
   ``ignoreBudget`` entries excepted);
3. the next pass: recursion on the new contents, a deeper scan for min activations, or the
   next delayed-recursion level; finally placement (:mod:`bot.prompt.lore.result`) and timers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.prompt.lore.groups import filter_groups
from bot.prompt.lore.index import book_index
from bot.prompt.lore.matching import RegexClock
from bot.prompt.lore.model import (
    MAX_SCAN_DEPTH,
    Lorebook,
    LoreEntry,
    LoreSettings,
    Strategy,
)
from bot.prompt.lore.result import LoreResult, ScanText, Transform, place
from bot.prompt.lore.scanning import (
    Buffer,
    Gate,
    KeyMatcher,
    MatchSources,
    ScanState,
    forced_reason,
    skip_reason,
)
from bot.prompt.lore.state import LoreState, Timers
from bot.prompt.macros import MacroContext, expand
from bot.prompt.tokens import TokenCounter
from bot.types import ChatMessage

_MAX_PASSES = 5_000  # a safety net; ST's own bounds (entries, chat depth) end far sooner


@dataclass(frozen=True, slots=True)
class LoreBooks:
    """The active books by source. Names identify books: a book already active from a
    higher source (global > chat > persona > character) is not scanned twice."""

    chat: tuple[Lorebook, ...] = ()
    persona: tuple[Lorebook, ...] = ()
    character: tuple[Lorebook, ...] = ()
    global_: tuple[Lorebook, ...] = ()

    def sorted_entries(self, strategy: int) -> list[tuple[LoreEntry, Lorebook]]:
        """ST's ``getSortedEntries``: chat lore, persona lore, then character/global."""
        seen: set[str] = {b.name for b in self.global_}
        glob = _flatten(self.global_, set())
        chat = _flatten(self.chat, seen)
        persona = _flatten(self.persona, seen)
        character = _flatten(self.character, seen)
        if strategy == Strategy.CHARACTER_FIRST:
            rest = _by_order(character) + _by_order(glob)
        elif strategy == Strategy.GLOBAL_FIRST:
            rest = _by_order(glob) + _by_order(character)
        else:  # evenly, and ST's fallback for an unknown strategy
            rest = _by_order(glob + character)
        return _by_order(chat) + _by_order(persona) + rest


@dataclass(frozen=True, slots=True)
class LoreContext:
    """Facts about this generation that some entries look at. All optional.

    ``character`` is what character filters compare with (ST uses the card's file name);
    ``assistant_messages`` and ``greeting_index`` feed the CCv3 ``@@activate_only_after``/
    ``@@activate_only_every`` and ``@@is_greeting`` decorators (None: ignore them);
    ``forced`` activates entries by (book, uid), like ST's ``/wi`` force-activation.
    """

    trigger: str = "normal"
    character: str = ""
    character_tags: frozenset[str] = frozenset()
    sources: MatchSources = field(default_factory=MatchSources)
    assistant_messages: int | None = None
    greeting_index: int | None = None
    forced: frozenset[tuple[str, int | str]] = frozenset()


def scan_texts(messages: Sequence[ChatMessage], settings: LoreSettings) -> list[ScanText]:
    """History as ST scans it: newest first, ``"Name: text"`` when include_names is on;
    hidden messages (ST's ``is_system``, our ``extra["hidden"]``) are not scanned."""
    shown = [m for m in reversed(messages) if not (getattr(m, "extra", None) or {}).get("hidden")]
    if settings.include_names:
        return [f"{m.name}: {m.text}" for m in shown]
    return [m.text for m in shown]


def activate(
    books: LoreBooks | Sequence[Lorebook],
    scan: Sequence[ScanText],
    settings: LoreSettings,
    *,
    max_context: int,
    counter: TokenCounter,
    state: LoreState,
    chat_length: int,
    rng: random.Random,
    names: tuple[str, str] = ("", ""),
    extra_scan: Sequence[str] = (),
    context: LoreContext | None = None,
    macros: Callable[[str], str] | None = None,
    transform: Transform | None = None,
) -> LoreResult:
    """Run world-info activation for one generation. Pure: same inputs, same result.

    ``books``: a :class:`LoreBooks`, or a plain sequence (one source, sorted by ``order``).
    ``scan``: chat messages newest first as ST formats them (see :func:`scan_texts`); pass at
    least the scan depth's worth (all of them, up to 1,000, when min activations is on).
    ``max_context``: ST's "max context" for the budget — the context size minus the response
    length. ``chat_length``: the messages ST counts — the whole chat without hidden messages
    (its ``chat.length`` here; timers, delays and min activations use it), so
    ``len(scan_texts(history, settings))`` when ``scan`` is built from the whole history.
    ``names``: (user, character) for ``{{user}}``/``{{char}}`` in keys and contents, unless
    ``macros`` expands text itself. ``extra_scan``: prompts that are scanned too (an author's
    note with "allow WI scan", persona at depth, a quiet prompt). ``context``: trigger,
    character filter, extra matching sources, CCv3 counts and forced entries.
    ``transform``: applied to each activated entry's text before placement (regex scripts);
    an empty result drops the entry, as in ST.
    """
    ctx = context or LoreContext()
    user, char = names
    expand_macros = macros or (lambda text: expand(text, MacroContext(user=user, char=char)))
    if not isinstance(books, LoreBooks):
        books = LoreBooks(global_=tuple(books))
    trace: list[str] = []
    pairs = books.sorted_entries(settings.character_strategy)
    budget = math.floor(settings.budget * max_context / 100 + 0.5) or 1  # JS Math.round
    if settings.budget_cap > 0 and budget > settings.budget_cap:
        budget = settings.budget_cap
    cap = f", cap {settings.budget_cap}" if settings.budget_cap > 0 else ""
    trace.append(f"budget: {budget} tokens ({settings.budget:g}% of {max_context}{cap})")
    timers = Timers(state, [e for e, _ in pairs], chat_length, trace)
    if not pairs:
        return LoreResult(trace=tuple(trace), state=timers.record(()), budget=budget)
    scan_run = _Run(
        pairs=pairs,
        settings=settings,
        budget=budget,
        counter=counter,
        rng=rng,
        macros=expand_macros,
        buffer=Buffer(scan, extra_scan, ctx.sources, settings),
        keys=KeyMatcher(
            settings,
            expand_macros,
            RegexClock(settings.regex_timeout, settings.regex_total_timeout, trace),
        ),
        gate=Gate(
            settings=settings,
            timers=timers,
            trigger=ctx.trigger,
            character=ctx.character,
            character_tags=ctx.character_tags,
            forced=ctx.forced,
            assistant_messages=ctx.assistant_messages,
            greeting_index=ctx.greeting_index,
        ),
        chat_length=chat_length,
        trace=trace,
    )
    scan_run.loop()
    activated = list(scan_run.activated.values())
    placed = place(activated, scan_run.contents, transform, trace)
    used = 0
    if activated:
        used = counter.count("".join(scan_run.contents[e.ident] + "\n" for e in activated))
    trace.append(f"activated {len(activated)} entries, {used} tokens")
    automation = tuple(dict.fromkeys(e.automation_id for e in activated if e.automation_id))
    return LoreResult(
        before=placed.before,
        after=placed.after,
        an_top=placed.an_top,
        an_bottom=placed.an_bottom,
        em_top=placed.em_top,
        em_bottom=placed.em_bottom,
        depth=placed.depth,
        outlets=placed.outlets,
        activated=tuple(e.ident for e in activated),
        automation_ids=automation,
        trace=tuple(trace),
        state=timers.record(activated),
        budget=budget,
        used_tokens=used,
        overflowed=scan_run.overflowed,
    )


def _flatten(books: Sequence[Lorebook], seen: set[str]) -> list[tuple[LoreEntry, Lorebook]]:
    out: list[tuple[LoreEntry, Lorebook]] = []
    for book in books:
        if book.name in seen:
            continue
        seen.add(book.name)
        out.extend((e, book) for e in book.entries)
    return out


def _by_order(pairs: list[tuple[LoreEntry, Lorebook]]) -> list[tuple[LoreEntry, Lorebook]]:
    return sorted(pairs, key=lambda p: -p[0].order)  # stable, like JS Array.sort


class _Run:
    """The mutable state of one activation's passes."""

    def __init__(
        self,
        *,
        pairs: list[tuple[LoreEntry, Lorebook]],
        settings: LoreSettings,
        budget: int,
        counter: TokenCounter,
        rng: random.Random,
        macros: Callable[[str], str],
        buffer: Buffer,
        keys: KeyMatcher,
        gate: Gate,
        chat_length: int,
        trace: list[str],
    ) -> None:
        self.pairs = pairs
        self.settings = settings
        self.budget = budget
        self.counter = counter
        self.rng = rng
        self.macros = macros
        self.buffer = buffer
        self.keys = keys
        self.gate = gate
        self.chat_length = chat_length
        self.trace = trace
        self.book_of = {e.ident: b for e, b in reversed(pairs)}
        self.books = list({id(b): b for _, b in pairs}.values())
        self.index = {e.ident: i for i, (e, _) in reversed(list(enumerate(pairs)))}
        self.activated: dict[tuple[str, int | str], LoreEntry] = {}
        self.failed: set[tuple[str, int | str]] = set()
        self.contents: dict[tuple[str, int | str], str] = {}
        self.all_text = ""  # contents fed to recursion so far, newest first (ST's order)
        self.overflowed = False
        self.told: set[tuple[tuple[str, int | str], str]] = set()

    def loop(self) -> None:
        levels = sorted({e.delay_until_recursion for e, _ in self.pairs} - {0})
        level = levels.pop(0) if levels else 0
        state, count = ScanState.INITIAL, 0
        while state:
            steps = self.settings.max_recursion_steps
            if (steps and steps <= count) or count >= _MAX_PASSES:
                self.trace.append(f"stopped after {count} passes (max recursion steps)")
                break
            count += 1
            new = self.candidates(state, level, count)
            self.admit(new, state, count)
            successful = [e for e in new if e.ident not in self.failed]
            for_recursion = [e for e in successful if not e.prevent_recursion]
            nxt = ScanState.NONE
            recursive = self.settings.recursive and not self.overflowed
            if recursive and for_recursion:
                nxt = ScanState.RECURSION
            if recursive and state == ScanState.MIN_ACTIVATIONS and self.buffer.has_recurse():
                nxt = ScanState.RECURSION  # a deeper scan is always followed by recursion
            wanted = self.settings.min_activations
            if not nxt and not self.overflowed and wanted > 0 and len(self.activated) < wanted:
                depth = self.buffer.depth
                limit = self.settings.min_activations_depth_max
                if (limit > 0 and depth > limit) or depth > min(self.chat_length, MAX_SCAN_DEPTH):
                    self.trace.append(f"min activations: {len(self.activated)}/{wanted}, chat end")
                else:
                    nxt = ScanState.MIN_ACTIVATIONS
                    self.buffer.skew += 1
                    self.trace.append(
                        f"min activations: {len(self.activated)}/{wanted}, "
                        f"scanning depth {self.buffer.depth}"
                    )
            if nxt == ScanState.NONE and levels:
                nxt, level = ScanState.RECURSION, levels.pop(0)
                self.trace.append(f"opening delayed recursion level {level}")
            state = nxt
            if state:
                text = "\n".join(self.contents.get(e.ident, e.content) for e in for_recursion)
                if text:
                    self.buffer.add_recurse(text)
                    self.all_text = text + "\n" + self.all_text

    def candidates(self, state: ScanState, level: int, count: int) -> list[LoreEntry]:
        """Entries that activate in this pass, before groups, probability and budget."""
        found: dict[tuple[str, int | str], LoreEntry] = {}
        tag = f"pass {count} ({state.name.lower().replace('_', ' ')})"
        maybe = self.maybe(state)
        for entry, book in self.pairs:
            ident = entry.ident
            if ident not in maybe or ident in self.failed or ident in self.activated:
                continue
            if ident in found:
                continue
            why_not = skip_reason(entry, self.gate, state, level)
            if why_not is not None:
                if (ident, why_not) not in self.told:  # once per reason, not every pass
                    self.told.add((ident, why_not))
                    self.trace.append(f"{tag}: {entry.label} skipped: {why_not}")
                continue
            forced = forced_reason(entry, self.gate)
            if forced == "skip":
                self.trace.append(f"{tag}: {entry.label} skipped: @@dont_activate")
                continue
            if forced is not None:
                self.trace.append(f"{tag}: {entry.label} activated: {forced}")
                found[ident] = entry
                continue
            if not entry.key:
                if (ident, "") not in self.told:
                    self.told.add((ident, ""))
                    self.trace.append(f"{tag}: {entry.label} has no keys, skipped")
                continue
            hay = self.buffer.get(entry, state)
            hit = self.keys.primary(book, entry, hay)
            if hit is None:
                continue  # like ST, plain misses are not traced
            selective = entry.selective and entry.keysecondary
            if selective and not self.keys.secondary(book, entry, hay):
                self.trace.append(f"{tag}: {entry.label} key {hit!r} matched, secondary keys not")
                continue
            v3 = self.keys.v3_keys(book, entry, hay)
            if v3 is not None:
                self.trace.append(f"{tag}: {entry.label} key {hit!r} matched, but {v3}")
                continue
            self.trace.append(f"{tag}: {entry.label} activated by key {hit!r}")
            found[ident] = entry
        sticky = self.gate.timers.sticky
        return sorted(found.values(), key=lambda e: (e.ident not in sticky, self.index[e.ident]))

    def maybe(self, state: ScanState) -> set[tuple[str, int | str]]:
        """Entries that may activate this pass: the key index's hits, and sticky or forced
        ones. Every other entry has no key in the text, so checking it would change nothing."""
        hay = self.buffer.default(state)
        found = set(self.gate.timers.sticky) | set(self.gate.forced)
        for book in self.books:
            entries = book.entries
            found.update(entries[i].ident for i in book_index(book, self.settings).hits(hay))
        return found

    def admit(self, new: list[LoreEntry], state: ScanState, count: int) -> None:
        """Groups, probability and budget for this pass's candidates (``new`` is trimmed)."""
        if not new:
            return
        text_tokens = self.counter.count(self.all_text) if self.all_text else 0

        def score(entry: LoreEntry) -> int:
            book = self.book_of[entry.ident]
            return self.keys.score(book, entry, self.buffer.get(entry, state))

        filter_groups(
            new, self.activated, self.settings, self.gate.timers, score, self.rng, self.trace
        )
        ignoring = sum(1 for e in new if e.ignore_budget)
        new_content = ""
        for entry in new:
            ignoring -= entry.ignore_budget
            if self.overflowed and not entry.ignore_budget:
                if ignoring > 0:
                    continue
                break
            if not self._roll(entry):
                continue
            content = self.macros(entry.content)
            self.contents[entry.ident] = content
            new_content += content + "\n"
            total = text_tokens + self.counter.count(new_content)
            if not entry.ignore_budget and total >= self.budget:
                self.overflowed = True
                self.trace.append(
                    f"{entry.label} cut: budget {self.budget} reached ({total} tokens with it)"
                )
                continue
            self.activated[entry.ident] = entry
            note = ", ignores the budget" if entry.ignore_budget else ""
            self.trace.append(f"{entry.label} added ({total}/{self.budget} tokens{note})")

    def _roll(self, entry: LoreEntry) -> bool:
        if not entry.use_probability or entry.probability == 100:
            return True
        if entry.ident in self.gate.timers.sticky:
            return True  # a sticky entry keeps its earlier roll
        roll = self.rng.random() * 100
        if roll <= entry.probability:
            self.trace.append(f"{entry.label} passed its {entry.probability:g}% roll")
            return True
        self.failed.add(entry.ident)
        self.trace.append(f"{entry.label} failed its {entry.probability:g}% roll ({roll:.1f})")
        return False
