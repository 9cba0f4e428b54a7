"""Typed reads of card fields. Two policies, by what a field is for:

- fields that reach the prompt or the chat (texts, greetings, the character's note text) are
  strict: a wrong type is a :class:`CardError` naming the file and field;
- metadata that SillyTavern itself ignores or tolerates (V3 dates, sources, assets, the note's
  depth and role, talkativeness) is best effort: a bad value falls back to its default and the
  problem is returned for the caller to log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from bot.prompt.cards.model import Asset, CardError, DepthPrompt
from bot.types import Role

_ROLES: dict[Any, Role] = {"system": "system", "user": "user", "assistant": "assistant"}
_ROLE_NUMBERS: dict[int, Role] = {0: "system", 1: "user", 2: "assistant"}


class Fields:
    """Typed reads from a card's field mapping; ``fallback`` is V2's duplicated top level."""

    def __init__(
        self, data: Mapping[str, Any], fallback: Mapping[str, Any], source: str, prefix: str
    ) -> None:
        self._data = data
        self._fallback = fallback
        self.source = source
        self.prefix = prefix

    def path(self, key: str) -> str:
        prefix = self.prefix if key in self._data else ""
        return f"{self.source}: {prefix}{key}"

    def get(self, key: str) -> Any:
        # SillyTavern reads data.* first and falls back to the V1 copy at the top level
        return self._data[key] if key in self._data else self._fallback.get(key)

    def text(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise CardError(f"{self.path(key)}: expected text, got {json_type(value)}")
        return value

    def loose_text(self, key: str) -> str:
        """Metadata text: numbers are accepted (``character_version: 1.2`` is common)."""
        value = self.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return self.text(key)

    def name(self, key: str = "name") -> str:
        value = self.text(key)
        if not value.strip():
            raise CardError(f"{self.source}: {self.prefix}{key}: missing")
        return value

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise CardError(f"{self.path(key)}: expected a list, got {json_type(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise CardError(f"{self.path(key)}[{i}]: expected text, got {json_type(item)}")
        return tuple(value)

    def tags(self) -> tuple[str, ...]:
        value = self.get("tags")
        if isinstance(value, str):  # some old exports store "a, b"
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return self.text_list("tags")

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise CardError(f"{self.path(key)}: expected an object, got {json_type(value)}")
        return value


# -- best-effort metadata -------------------------------------------------------------------------
# Each returns (value, problems); a problem is "field: what was wrong" for a warning.


def parse_date(value: Any, where: str) -> tuple[int | None, list[str]]:
    if value is None:
        return None, []
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return int(value), []
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip()), []
    return None, [f"{where}: expected unix seconds, got {json_type(value)}; ignored"]


def parse_text_items(value: Any, where: str) -> tuple[tuple[str, ...], list[str]]:
    if value is None:
        return (), []
    if not isinstance(value, list):
        return (), [f"{where}: expected a list, got {json_type(value)}; ignored"]
    kept = tuple(item for item in value if isinstance(item, str))
    skipped = len(value) - len(kept)
    return kept, [f"{where}: {skipped} item(s) that are not text ignored"] if skipped else []


def parse_assets(value: Any, where: str) -> tuple[tuple[Asset, ...], list[str]]:
    if value is None:
        return (), []
    if not isinstance(value, list):
        return (), [f"{where}: expected a list, got {json_type(value)}; ignored"]
    assets: list[Asset] = []
    problems: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
            problems.append(f"{where}[{i}]: expected an object with a text 'uri'; ignored")
            continue
        parts = [item.get(k, "") for k in ("type", "name", "ext")]
        if not all(isinstance(p, str) for p in parts):
            problems.append(f"{where}[{i}]: type, name and ext must be text; ignored")
            continue
        assets.append(Asset(parts[0], item["uri"], parts[1], parts[2]))
    return tuple(assets), problems


def parse_multilingual(value: Any, where: str) -> tuple[dict[str, str], list[str]]:
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [f"{where}: expected an object, got {json_type(value)}; ignored"]
    kept = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    skipped = len(value) - len(kept)
    return kept, [f"{where}: {skipped} entries that are not text ignored"] if skipped else []


def parse_talkativeness(value: Any, where: str) -> tuple[float, list[str]]:
    if value is None:
        return 0.5, []
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):  # SillyTavern itself stores "0.5"
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        return 0.5, [f"{where}: expected a number from 0 to 1, got {value!r:.40}; using 0.5"]
    return min(max(number, 0.0), 1.0), []


def parse_depth_prompt(value: Any, where: str) -> tuple[DepthPrompt | None, list[str]]:
    """SillyTavern's ``depth_prompt``: ``{prompt, depth (4), role ("system")}``. The text is
    strict (it reaches the prompt); depth and role fall back to SillyTavern's defaults."""
    if value is None:
        return None, []
    if not isinstance(value, dict):
        raise CardError(f"{where}: expected an object, got {json_type(value)}")
    prompt = value.get("prompt")
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise CardError(f"{where}.prompt: expected text, got {json_type(prompt)}")
    problems: list[str] = []
    depth = _depth(value.get("depth"))
    if depth is None:
        problems.append(f"{where}.depth: expected a whole number ≥ 0; using 4")
        depth = 4
    raw_role = value.get("role")
    role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
    if role is None and isinstance(raw_role, int) and not isinstance(raw_role, bool):
        role = _ROLE_NUMBERS.get(raw_role)
    if role is None:
        if raw_role is not None:
            problems.append(f"{where}.role: {raw_role!r:.30} is not a role; using system")
        role = "system"
    return DepthPrompt(prompt, depth, role), problems


def _depth(value: Any) -> int | None:
    if value is None:
        return 4
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value <= 10_000:
        return value
    return None


# -- decoding -------------------------------------------------------------------------------------


def decode_text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CardError(f"{where}: not UTF-8 text (bad byte at offset {exc.start})") from None


def decode_json(data: bytes, where: str) -> Any:
    return loads_json(decode_text(data, where), where)


def loads_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
        raise CardError(f"{where}: not valid JSON ({exc.__class__.__name__})") from None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__} value"  # YAML dates and the like


def mib(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB"
