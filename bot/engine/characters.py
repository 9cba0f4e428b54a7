"""Characters by name: configured card files, cached, with the bundled example as fallback."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bot.config import AppConfig
from bot.errors import ConfigError
from bot.prompt.card import Character, load_card, parse_card

DEFAULT_CHARACTER = "aria"


class CharacterLibrary:
    """Loads each card once per file change; a broken card is a clear ConfigError."""

    def __init__(self, config: AppConfig) -> None:
        self._paths = {name: c.card for name, c in config.characters.items()}
        self._default = config.defaults.character or next(iter(self._paths), DEFAULT_CHARACTER)
        self._cache: dict[str, tuple[float, Character]] = {}
        self._by_name: dict[str, str] = {}  # a card's name -> its key (group members)

    @property
    def default(self) -> str:
        return self._default

    def names(self) -> list[str]:
        return sorted({*self._paths, DEFAULT_CHARACTER})

    def get(self, name: str = "") -> Character:
        name = name or self._default
        if name == DEFAULT_CHARACTER and name not in self._paths:
            return self._bundled()
        path = self._paths.get(name)
        if path is None:
            raise ConfigError(
                f"unknown character {name!r}", hint=f"known: {', '.join(self.names())}"
            )
        return self._load(path)

    def key_of(self, name: str) -> str:
        """The key of the character called ``name``: a key itself, else a card's name
        (group chats store names, not keys); case does not matter. ConfigError if none."""
        if name in self._paths or name == DEFAULT_CHARACTER:
            return name
        key = self._by_name.get(name)
        if key is not None and self.get(key).name == name:  # a card may have been renamed
            return key
        self._by_name.clear()
        for known in self.names():
            try:
                self._by_name.setdefault(self.get(known).name, known)
            except ConfigError:
                continue  # a broken card is reported when it is used, not here
        wanted = name.strip().casefold()
        found = self._by_name.get(name) or next(
            (k for n, k in self._by_name.items() if wanted in (n.casefold(), k.casefold())), None
        )
        if found is None:
            raise ConfigError(
                f"unknown character {name!r}", hint=f"known: {', '.join(self.names())}"
            )
        return found

    def _load(self, path: Path) -> Character:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            raise ConfigError(f"character card not found: {path}") from None
        cached = self._cache.get(str(path))
        if cached and cached[0] == mtime:
            return cached[1]
        character = load_card(path)
        self._cache[str(path)] = (mtime, character)
        return character

    def _bundled(self) -> Character:
        cached = self._cache.get(DEFAULT_CHARACTER)
        if cached:
            return cached[1]
        data = resources.files("bot.data").joinpath("aria.json").read_bytes()
        character = parse_card(data, "aria.json")
        self._cache[DEFAULT_CHARACTER] = (0.0, character)
        return character
