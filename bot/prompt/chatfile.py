"""SillyTavern chat files (JSONL): import to :class:`ChatMessage` history and export back.

Line 1 is a header ``{user_name, character_name, create_date, chat_metadata}``; each further
line is a message ``{name, is_user, is_system, send_date, mes, extra, swipes?, swipe_id?,
swipe_info?, …}``. Mapping:

- ``is_user`` → role ``user``; a narrator line (``extra.type == "narrator"``) → ``system``;
  anything else → ``assistant``. ``is_system`` (hidden from the AI) → ``extra["hidden"]``.
- ``swipes``/``swipe_id`` → the same on the message; ``swipe_info[i]`` →
  ``swipe_meta[i]["st"]``, with its ``extra.reasoning`` and ``extra.model`` lifted to
  ``swipe_meta[i]["reasoning"]``/``["model"]`` where the engine keeps them.
- Everything else in the line is kept in ``extra["st"]`` (the text fields blanked, since they
  live in ``text``/``swipes``), so an export gives back what was imported, unknown keys and
  key order included.

Reading is bounded (bytes, lines, line length) and every error names the file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.errors import ConfigError
from bot.types import ChatMessage, Role

_BULKY = ("mes", "swipes", "swipe_info")  # kept in text/swipes/swipe_meta, blanked in "st"
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MERIDIEM = re.compile(r"(\w+)\s(\d{1,2}),\s(\d{4})\s(\d{1,2}):(\d{1,2})(am|pm)", re.IGNORECASE)
_HUMANIZED = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2}) ?@(\d{1,2})h ?(\d{1,2})m ?(\d{1,2})s")


class ChatFileError(ConfigError):
    hint = "use a chat file exported by SillyTavern (.jsonl)"


@dataclass(frozen=True, slots=True)
class ChatFileLimits:
    max_bytes: int = 64 * 1024 * 1024
    max_lines: int = 100_000
    max_line_bytes: int = 8 * 1024 * 1024


@dataclass(slots=True)
class ImportedChat:
    """An imported chat: names and metadata from the header, then the messages in order
    (``id`` is the position, from 0). ``header`` is the whole header line."""

    user_name: str
    character_name: str
    create_date: str
    metadata: dict[str, Any]
    messages: list[ChatMessage]
    header: dict[str, Any] = field(default_factory=dict)


def import_chat_jsonl(
    data: bytes, source: str, *, limits: ChatFileLimits = ChatFileLimits()
) -> ImportedChat:
    """Parse a SillyTavern chat file; ``source`` names it in errors."""
    if len(data) > limits.max_bytes:
        raise ChatFileError(f"{source}: {len(data)} bytes is over the limit of {limits.max_bytes}")
    lines = data.split(b"\n")  # not splitlines(): U+2028 inside a message is not a line break
    if len(lines) > limits.max_lines + 1:
        raise ChatFileError(f"{source}: more than {limits.max_lines} lines")
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, 1):
        if len(line) > limits.max_line_bytes:
            raise ChatFileError(f"{source}: line {number}: over {limits.max_line_bytes} bytes")
        if line.strip():
            records.append((number, _parse_line(line, f"{source}: line {number}")))
    if not records:
        raise ChatFileError(f"{source}: empty file — not a chat")
    header: dict[str, Any] = {}
    if not any(k in records[0][1] for k in ("mes", "is_user")):  # else a file without header
        header = records.pop(0)[1]
    where = f"{source}: line 1"
    metadata = header.get("chat_metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise ChatFileError(f"{where}: chat_metadata: expected an object")
    messages = [
        _message(i, rec, f"{source}: line {number}") for i, (number, rec) in enumerate(records)
    ]
    return ImportedChat(
        user_name=_text(header, "user_name", where),
        character_name=_text(header, "character_name", where),
        create_date=str(header.get("create_date") or ""),
        metadata=metadata,
        messages=messages,
        header=header,
    )


def export_chat_jsonl(
    messages: Sequence[ChatMessage],
    user_name: str,
    character_name: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    create_date: str = "",
) -> bytes:
    """A chat file SillyTavern imports: its header, then one line per message, joined by
    newlines without a trailing one (as SillyTavern saves chats)."""
    if not create_date:
        first = next((m.created for m in messages if m.created), 0.0)
        create_date = _humanized(first) if first else ""
    header = {
        "user_name": user_name,
        "character_name": character_name,
        "create_date": create_date,
        "chat_metadata": dict(metadata or {}),
    }
    lines = [header, *(_record(m) for m in messages)]
    return "\n".join(_dumps(line) for line in lines).encode("utf-8")


def message_reasoning(message: ChatMessage) -> str:
    """The reasoning kept with a message's selected swipe, or ""."""
    reasoning = message.meta.get("reasoning")
    if isinstance(reasoning, str):
        return reasoning
    st = message.extra.get("st")
    extra = st.get("extra") if isinstance(st, dict) else None
    value = extra.get("reasoning") if isinstance(extra, dict) else None
    return value if isinstance(value, str) else ""


# -- import ---------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # JavaScript's JSON.parse refuses it too


def _parse_line(line: bytes, where: str) -> dict[str, Any]:
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise ChatFileError(f"{where}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ChatFileError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise ChatFileError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ChatFileError(f"{where}: expected a JSON object")
    return obj


def _message(index: int, rec: dict[str, Any], where: str) -> ChatMessage:
    text = _flat(rec.get("mes"), f"{where}: mes")
    swipes = _swipes(rec.get("swipes"), f"{where}: swipes")
    swipe_id = rec.get("swipe_id", 0)
    if not isinstance(swipe_id, int) or isinstance(swipe_id, bool):
        raise ChatFileError(f"{where}: swipe_id: expected a whole number")
    info = rec.get("swipe_info")
    if info is not None and not isinstance(info, list):
        raise ChatFileError(f"{where}: swipe_info: expected a list")
    if swipes:
        # mes is what SillyTavern shows; keep it the selected swipe's text
        if 0 <= swipe_id < len(swipes):
            swipes[swipe_id] = text
        else:
            swipes.append(text)
            swipe_id = len(swipes) - 1
    else:
        swipe_id = 0
    extra = rec.get("extra")
    st = {k: (None if k in _BULKY else v) for k, v in rec.items()}
    message_extra: dict[str, Any] = {"st": st}
    if rec.get("is_system") is True:
        message_extra["hidden"] = True
    return ChatMessage(
        id=index,
        role=_role(rec, extra),
        name=_text(rec, "name", where),
        text=text,
        swipes=swipes,
        swipe_id=swipe_id,
        swipe_meta=_swipe_meta(swipes, swipe_id, info or [], extra),
        created=_timestamp(rec.get("send_date")),
        extra=message_extra,
    )


def _role(rec: dict[str, Any], extra: Any) -> Role:
    if rec.get("is_user") is True:
        return "user"
    if isinstance(extra, dict) and extra.get("type") == "narrator":
        return "system"
    return "assistant"


def _flat(value: Any, where: str) -> str:
    if isinstance(value, dict) and "message" in value:  # Chub's export nests the text
        value = value["message"]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ChatFileError(f"{where}: expected text")
    return value


def _swipes(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ChatFileError(f"{where}: expected a list")
    return [_flat(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _swipe_meta(
    swipes: list[str], swipe_id: int, info: list[Any], extra: Any
) -> list[dict[str, Any]]:
    metas: list[dict[str, Any]] = []
    for i in range(len(swipes)):
        meta: dict[str, Any] = {}
        item = info[i] if i < len(info) else None
        if isinstance(item, dict):
            meta["st"] = item
        source = item.get("extra") if isinstance(item, dict) else None
        if i == swipe_id and isinstance(extra, dict):
            source = extra  # the message-level extra is the selected swipe's
        if isinstance(source, dict):
            for key in ("reasoning", "model"):
                if isinstance(source.get(key), str) and source[key]:
                    meta[key] = source[key]
        metas.append(meta)
    return metas


def _text(rec: Mapping[str, Any], key: str, where: str) -> str:
    value = rec.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ChatFileError(f"{where}: {key}: expected text")
    return value


def _timestamp(value: Any) -> float:
    """Seconds since the epoch from any send_date SillyTavern has written; 0.0 if unknown.

    Dates without a zone are read as UTC (SillyTavern wrote its local time)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _sane(value / 1000)  # legacy: milliseconds
        except OverflowError:
            return 0.0
    if not isinstance(value, str) or not value:
        return 0.0
    parts: tuple[int, ...]
    if m := _MERIDIEM.search(value):
        month, day, year, hour, minute, half = m.groups()
        names = [n.lower() for n in _MONTHS]
        if month.lower() not in names:
            return 0.0
        hour24 = int(hour) % 12 + (12 if half.lower() == "pm" else 0)
        parts = (int(year), names.index(month.lower()) + 1, int(day), hour24, int(minute), 0)
    elif m := _HUMANIZED.search(value):
        parts = tuple(int(p) for p in m.groups())
    else:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return 0.0
        return _sane((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())
    year_, month_, day_, hour_, minute_, second = parts
    try:
        return _sane(datetime(year_, month_, day_, hour_, minute_, second, tzinfo=UTC).timestamp())
    except ValueError:  # e.g. February 31
        return 0.0


def _sane(seconds: float) -> float:
    """``seconds`` if it is a date from 1970 to 9999, else 0.0 (unknown)."""
    return seconds if 0 <= seconds < 253_402_300_800 else 0.0


# -- export ---------------------------------------------------------------------------------------


def _record(m: ChatMessage) -> dict[str, Any]:
    st = m.extra.get("st")
    st = dict(st) if isinstance(st, dict) else {}
    hidden = bool(m.extra.get("hidden"))
    rec: dict[str, Any] = {} if st else {"name": "", "is_user": False, "is_system": False}
    rec.update(st)
    rec["name"] = m.name
    rec["is_user"] = m.role == "user"
    if hidden or "is_system" in rec:
        rec["is_system"] = hidden
    selected = m.meta.get("st") if m.swipes else None
    if not st or (selected and m.swipe_id != st.get("swipe_id")):
        rec["send_date"] = _send_date(m, selected)
    rec["mes"] = m.text
    rec["extra"] = _extra(rec.get("extra"), m, m.meta, selected, st.get("swipe_id"))
    if m.swipes:
        rec["swipe_id"] = m.swipe_id
        rec["swipes"] = list(m.swipes)
        rec["swipe_info"] = [_swipe_info(m, i) for i in range(len(m.swipes))]
    else:
        for key in ("swipes", "swipe_info"):
            rec.pop(key, None)
    return rec


def _extra(
    stored: Any, m: ChatMessage, meta: dict[str, Any], selected: Any, old_swipe_id: Any
) -> Any:
    if isinstance(selected, dict) and m.swipe_id != old_swipe_id:
        stored = selected.get("extra", stored)  # SillyTavern copies a swipe's extra on swiping
    extra = dict(stored) if isinstance(stored, dict) else {}
    if stored is not None and not isinstance(stored, dict):
        return stored  # something odd but imported: give it back as it was
    for key in ("reasoning", "model"):
        if isinstance(meta.get(key), str):
            extra[key] = meta[key]
    if "backend" in meta and "api" not in extra:
        extra["api"] = meta["backend"]
    if m.role == "system":
        extra["type"] = "narrator"
    return extra


def _swipe_info(m: ChatMessage, i: int) -> dict[str, Any]:
    meta = m.swipe_meta[i] if i < len(m.swipe_meta) else {}
    stored = meta.get("st")
    info: dict[str, Any] = (
        dict(stored) if isinstance(stored, dict) else {"send_date": _send_date(m, None)}
    )
    stored_extra = info.get("extra")
    extra = _extra(stored_extra if stored_extra is not None else {}, m, meta, None, m.swipe_id)
    tokens = meta.get("completion_tokens")
    if isinstance(extra, dict) and isinstance(tokens, int) and "token_count" not in extra:
        extra["token_count"] = tokens
    info["extra"] = extra
    return info


def _send_date(m: ChatMessage, selected: Any) -> str:
    if isinstance(selected, dict) and isinstance(selected.get("send_date"), str):
        return str(selected["send_date"])
    if not m.created:
        return ""
    when = datetime.fromtimestamp(m.created, UTC)
    hour = when.hour % 12 or 12
    half = "pm" if when.hour >= 12 else "am"
    return f"{_MONTHS[when.month - 1]} {when.day}, {when.year} {hour}:{when.minute:02d}{half}"


def _humanized(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d@%Hh%Mm%Ss")


def _dumps(obj: dict[str, Any]) -> str:
    # compact and unescaped, as JSON.stringify writes; NaN is refused on import, so never here
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
