"""Small builders for lore tests: books from entry dicts (through the real loader), a run."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.prompt.lore import (
    Lorebook,
    LoreBooks,
    LoreContext,
    LoreResult,
    LoreSettings,
    LoreState,
    activate,
    load_world,
)
from bot.prompt.tokens import EstimateCounter

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "sillytavern"


def book(*entries: dict[str, Any], name: str = "B") -> Lorebook:
    """A world book; each entry dict gets uid = its index unless it sets one."""
    data = {"entries": {str(e.get("uid", i)): {"uid": i, **e} for i, e in enumerate(entries)}}
    return load_world(data, f"{name}.json")


def run(
    books: LoreBooks | Sequence[Lorebook] | Lorebook,
    scan: Sequence[str],
    settings: LoreSettings | None = None,
    *,
    state: LoreState | None = None,
    chat_length: int | None = None,
    seed: int = 0,
    max_context: int = 8000,
    context: LoreContext | None = None,
    extra_scan: Sequence[str] = (),
    names: tuple[str, str] = ("Alex", "Mira"),
) -> LoreResult:
    if isinstance(books, Lorebook):
        books = [books]
    return activate(
        books,
        scan,
        settings or LoreSettings(),
        max_context=max_context,
        counter=EstimateCounter(),
        state=state or LoreState(),
        chat_length=len(scan) if chat_length is None else chat_length,
        rng=random.Random(seed),
        names=names,
        extra_scan=extra_scan,
        context=context,
    )


def uids(result: LoreResult) -> list[int | str]:
    return [uid for _, uid in result.activated]
