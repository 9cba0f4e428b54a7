"""Counting with a backend's own tokenizer while building a prompt synchronously.

A backend's token-count endpoint (llama.cpp ``/tokenize``, KoboldCpp ``/api/extra/tokencount``,
Claude ``count_tokens``…) is exact but remote, and the builder is pure and synchronous. So:

* texts counted by the endpoint before the build (:meth:`CalibratedCounter.prefetch`) are
  answered exactly from a bounded cache;
* any other text is estimated from characters, with rates measured against the same endpoint
  on a sample of real texts (:meth:`CalibratedCounter.calibrate`), padded by a safety margin.

The estimate is ``ceil((ascii / chars_per_token + other_units * tokens_per_unit) × (1 +
margin))``, where ``other_units`` are the UTF-16 units outside ASCII (scripts such as CJK cost
far more per character than English). The margin is the worst under-estimate seen on the
calibration samples plus 5 points, so the estimate covers every sample (and any run of
them) and some text unlike them; before any calibration it is 10% over rates that already
over-count English. Samples of very different density make a wide margin: prompts are then
cut short rather than let past the context.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from bot.backends.base import TokenCountingBackend
from bot.errors import BackendError
from bot.prompt.tokenizer_cache import CountCache

_log = logging.getLogger(__name__)

DEFAULT_CHARS_PER_TOKEN = 3.35  # SillyTavern's estimate
DEFAULT_TOKENS_PER_UNIT = 1.0  # CJK and similar scripts: about a token per character
SAFETY_POINTS = 0.05  # added to the worst sample's under-estimate
DEFAULT_MARGIN = 0.10  # before calibration
WIDE_MARGIN = 0.5  # above this a calibration is logged: prompts will be cut well short
MAX_MARGIN = 4.0  # above this the endpoint's counts are taken as broken and refused
MIN_SAMPLE_UNITS = 64  # shorter samples: a counted BOS token would dominate their ratio


@dataclass(frozen=True, slots=True)
class Calibration:
    """Character rates of one backend + model, JSON-safe for the store (:meth:`to_dict`).

    ``samples == 0`` marks the uncalibrated defaults: SillyTavern's 3.35 characters per token
    for ASCII and one token per non-ASCII UTF-16 unit. ``measured_at`` is wall-clock seconds.
    """

    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN
    tokens_per_unit: float = DEFAULT_TOKENS_PER_UNIT
    margin: float = DEFAULT_MARGIN
    samples: int = 0
    chars: int = 0
    tokens: int = 0
    measured_at: float = 0.0

    def __post_init__(self) -> None:
        rates = (self.chars_per_token, self.tokens_per_unit)
        if not all(math.isfinite(r) and r > 0 for r in rates):
            raise ValueError("calibration rates must be positive numbers")
        if not 0 <= self.margin <= MAX_MARGIN:
            raise ValueError(f"calibration margin {self.margin} is outside 0..{MAX_MARGIN}")

    def is_stale(self, now: float, max_age: float) -> bool:
        return self.samples == 0 or now - self.measured_at > max_age

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Calibration:
        """Read a stored calibration; :class:`ValueError` when it is not one."""
        return cls(
            chars_per_token=_number(data, "chars_per_token"),
            tokens_per_unit=_number(data, "tokens_per_unit"),
            margin=_number(data, "margin"),
            samples=int(_number(data, "samples", 0)),
            chars=int(_number(data, "chars", 0)),
            tokens=int(_number(data, "tokens", 0)),
            measured_at=_number(data, "measured_at", 0.0),
        )


def _number(data: Mapping[str, object], key: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a calibration: {key} is {value!r}")
    return float(value)


def split_units(text: str) -> tuple[int, int]:
    """(ASCII characters, other UTF-16 units) of ``text``, as JavaScript would measure."""
    if text.isascii():
        return len(text), 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars, len(text.encode("utf-16-le")) // 2 - ascii_chars


def fit(counted: Sequence[tuple[str, int]], measured_at: float = 0.0) -> Calibration:
    """Rates and margin from texts with their exact counts; :class:`ValueError` if none."""
    rows = [(*split_units(text), tokens) for text, tokens in counted if text and tokens > 0]
    if not rows:
        raise ValueError("no counted text to calibrate on")
    a = sum(r[0] for r in rows)
    o = sum(r[1] for r in rows)
    t = sum(r[2] for r in rows)
    per_char, per_unit = _rates(rows, a, o, t)
    long_rows = [r for r in rows if r[0] + r[1] >= MIN_SAMPLE_UNITS] or rows
    worst = max(tok / (ac * per_char + ou * per_unit) for ac, ou, tok in long_rows)
    margin = max(worst - 1.0, 0.0) + SAFETY_POINTS
    if margin > MAX_MARGIN:
        raise ValueError(f"the counts vary too much to estimate (margin {margin:.2f})")
    return Calibration(1.0 / per_char, per_unit, margin, len(rows), a + o, t, measured_at)


def _rates(rows: Sequence[tuple[int, int, int]], a: int, o: int, t: int) -> tuple[float, float]:
    """Tokens per ASCII character and per other unit (least squares when both occur)."""
    if o < 32 or o < 0.05 * (a + o):
        # too little non-ASCII text to measure it: charge every token to ASCII (over-counts)
        return (t / a if a else 1.0), DEFAULT_TOKENS_PER_UNIT
    if a < 32:
        return 1.0 / DEFAULT_CHARS_PER_TOKEN, t / o
    saa = sum(r[0] * r[0] for r in rows)
    soo = sum(r[1] * r[1] for r in rows)
    sao = sum(r[0] * r[1] for r in rows)
    sat = sum(r[0] * r[2] for r in rows)
    sot = sum(r[1] * r[2] for r in rows)
    det = saa * soo - sao * sao
    if det > 1e-9 * saa * soo:
        x = (sat * soo - sot * sao) / det
        y = (sot * saa - sat * sao) / det
        if 0.05 < x < 2.0 and 0.05 < y < 4.0:
            return x, y
    # one shape of text only: one rate for every unit
    return t / (a + o), t / (a + o)


def calibration_samples(texts: Iterable[str], *, samples: int = 8, chars: int = 1500) -> list[str]:
    """Cut real texts (the card, the newest messages) into up to ``samples`` pieces of about
    ``chars`` characters, split at whitespace, for :meth:`CalibratedCounter.calibrate`."""
    out: list[str] = []
    piece = ""
    for text in texts:
        piece = f"{piece}\n{text}" if piece else text
        while len(piece) >= chars and len(out) < samples:
            cut = piece.rfind(" ", chars // 2, chars)
            cut = chars if cut < 0 else cut
            out.append(piece[:cut])
            piece = piece[cut:].lstrip(" ")
        if len(out) >= samples:
            return out
    if piece.strip() and len(out) < samples:
        out.append(piece)
    return out


class CalibratedCounter:
    """Exact where prefetched, estimated (with margin) elsewhere; see the module docstring.

    ``backend`` is the default for :meth:`prefetch` and :meth:`calibrate`. After an endpoint
    failure no request is made for ``retry_after`` seconds, so a backend without a counter
    costs one failed request, not one per turn.
    """

    def __init__(
        self,
        name: str,
        *,
        calibration: Calibration | None = None,
        backend: TokenCountingBackend | None = None,
        cache: CountCache | None = None,
        concurrency: int = 4,
        retry_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.backend = backend
        self.cache = cache if cache is not None else CountCache()
        self._concurrency = max(1, concurrency)
        self._retry_after = retry_after
        self._clock = clock
        self._wall = wall
        self._failed_at: float | None = None
        self.restore(calibration or Calibration())

    @property
    def calibration(self) -> Calibration:
        return self._calibration

    def restore(self, calibration: Calibration) -> None:
        """Use rates measured earlier (read back from the store)."""
        self._calibration = calibration
        grow = 1.0 + calibration.margin
        self._per_char = grow / calibration.chars_per_token
        self._per_unit = grow * calibration.tokens_per_unit

    def needs_calibration(self, max_age: float = 7 * 86400.0) -> bool:
        return self._calibration.is_stale(self._wall(), max_age)

    def count(self, text: str) -> int:
        exact = self.cache.get(text)
        return exact if exact is not None else self.estimate(text)

    def estimate(self, text: str) -> int:
        if text.isascii():
            return math.ceil(len(text) * self._per_char)
        ascii_chars, other = split_units(text)
        return math.ceil(ascii_chars * self._per_char + other * self._per_unit)

    def is_exact(self, text: str) -> bool:
        return text in self.cache

    async def prefetch(
        self,
        texts: Iterable[str],
        backend: TokenCountingBackend | None = None,
        *,
        limit: int = 32,
        max_chars: int = 20_000,
    ) -> int:
        """Count up to ``limit`` uncached ``texts`` (in the order given: most important first)
        through the endpoint; returns how many were counted. Each count is cached as it
        arrives, so a caller bounding the wait (``async with asyncio.timeout(…)``) keeps what
        came in before the deadline. Texts over ``max_chars`` are skipped: they are whole
        assembled prompts, new every turn, so an exact count of one is never used again."""
        fresh = (t for t in texts if t and len(t) <= max_chars and t not in self.cache)
        todo = list(dict.fromkeys(fresh))[:limit]
        counts = await self._count_many(todo, backend)
        return len(counts)

    async def calibrate(
        self, samples: Sequence[str], backend: TokenCountingBackend | None = None
    ) -> Calibration | None:
        """Measure the rates on ``samples`` (see :func:`calibration_samples`); keeps the
        current calibration and returns ``None`` when the endpoint cannot be used."""
        texts = list(dict.fromkeys(s for s in samples if s))
        known = {t: n for t in texts if (n := self.cache.get(t)) is not None}
        asked = await self._count_many([t for t in texts if t not in known], backend)
        counted = {**known, **asked}
        try:
            calibration = fit(list(counted.items()), self._wall())
        except ValueError as exc:
            if counted:
                _log.warning("%s: calibration refused: %s", self.name, exc)
            return None
        self.restore(calibration)
        _log.log(
            logging.WARNING if calibration.margin > WIDE_MARGIN else logging.INFO,
            "%s: %.2f chars/token, %.2f tokens per non-ASCII unit, margin %.0f%% (%d samples)",
            self.name,
            calibration.chars_per_token,
            calibration.tokens_per_unit,
            calibration.margin * 100,
            calibration.samples,
        )
        return calibration

    async def _count_many(
        self, texts: list[str], backend: TokenCountingBackend | None
    ) -> dict[str, int]:
        """Exact counts of ``texts``, a few requests at a time, each cached on arrival; stops
        at the endpoint's first failure."""
        backend = backend or self.backend
        results: dict[str, int] = {}
        if backend is None or not texts or self._resting():
            return results
        pending = iter(texts)  # shared by the workers: each text is asked once

        async def worker() -> None:
            for text in pending:
                if self._failed_at is not None:
                    return
                try:
                    n = await backend.count_tokens(text)
                except BackendError as exc:
                    self._failed_at = self._clock()
                    _log.warning("%s: token count endpoint failed: %s", self.name, exc.message)
                    return
                if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
                    results[text] = n
                    self.cache.put(text, n)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._concurrency, len(texts))):
                group.create_task(worker())
        return results

    def _resting(self) -> bool:
        if self._failed_at is None:
            return False
        if self._clock() - self._failed_at < self._retry_after:
            return True
        self._failed_at = None
        return False
