"""SillyTavern chat files: the golden fixture imports and exports back to the same records;
swipes, reasoning, hidden and narrator lines survive; bad files name the file and line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.chatfile import (
    ChatFileError,
    ChatFileLimits,
    export_chat_jsonl,
    import_chat_jsonl,
    message_reasoning,
)
from bot.types import ChatMessage

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sillytavern"
GOLDEN_CHATS = sorted((FIXTURES / "golden").glob("*/inputs/chat.jsonl"))


def jsonl(*records: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()


def records(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.decode().split("\n") if line.strip()]


HEADER = {"user_name": "Alex", "character_name": "Mira", "create_date": "d", "chat_metadata": {}}


def error(data: bytes, source: str = "chat.jsonl", **limits: int) -> str:
    with pytest.raises(ChatFileError) as info:
        import_chat_jsonl(data, source, limits=ChatFileLimits(**limits))
    return info.value.message


# -- the golden fixture ---------------------------------------------------------------------------


def test_golden_fixtures_exist() -> None:
    assert len(GOLDEN_CHATS) == 3


@pytest.mark.parametrize("path", GOLDEN_CHATS, ids=lambda p: p.parts[-3])
def test_golden_chat_imports(path: Path) -> None:
    chat = import_chat_jsonl(path.read_bytes(), str(path))
    assert (chat.user_name, chat.character_name) == ("Alex", "Seraphina")
    assert chat.create_date == "2024-10-01@10h00m00s"
    assert chat.metadata == {}
    roles = [(m.id, m.role, m.name) for m in chat.messages]
    assert roles == [
        (0, "assistant", "Seraphina"),
        (1, "user", "Alex"),
        (2, "assistant", "Seraphina"),
        (3, "user", "Alex"),
        (4, "assistant", "Seraphina"),
    ]
    assert chat.messages[1].text.startswith("*I try to sit up, wincing")
    assert chat.messages[0].created == datetime(2024, 10, 1, 10, 0, tzinfo=UTC).timestamp()
    assert all(not m.swipes and not m.extra.get("hidden") for m in chat.messages)


@pytest.mark.parametrize("path", GOLDEN_CHATS, ids=lambda p: p.parts[-3])
def test_golden_chat_round_trip(path: Path) -> None:
    original = path.read_bytes()
    chat = import_chat_jsonl(original, str(path))
    exported = export_chat_jsonl(
        chat.messages,
        chat.user_name,
        chat.character_name,
        chat.metadata,
        create_date=chat.create_date,
    )
    assert records(exported) == records(original)
    # key order too, and SillyTavern's layout: compact, no trailing newline
    assert [list(r) for r in records(exported)] == [list(r) for r in records(original)]
    assert not exported.endswith(b"\n")
    assert b'", "' not in exported
    again = import_chat_jsonl(exported, "again.jsonl")
    assert [m.to_dict() for m in again.messages] == [m.to_dict() for m in chat.messages]


def test_survives_storage_round_trip() -> None:
    """What the engine stores (``to_dict``) is enough to export the same file."""
    original = GOLDEN_CHATS[0].read_bytes()
    chat = import_chat_jsonl(original, "c.jsonl")
    stored = [ChatMessage.from_dict(json.loads(json.dumps(m.to_dict()))) for m in chat.messages]
    exported = export_chat_jsonl(stored, "Alex", "Seraphina", {}, create_date=chat.create_date)
    assert records(exported) == records(original)


# -- swipes, reasoning, hidden, narrator ----------------------------------------------------------


SWIPED = {
    "name": "Mira",
    "is_user": False,
    "is_system": False,
    "send_date": "June 19, 2023 2:20pm",
    "mes": "Second.",
    "extra": {"api": "openai", "model": "m2", "reasoning": "think 2"},
    "swipe_id": 1,
    "swipes": ["First.", "Second."],
    "swipe_info": [
        {
            "send_date": "June 19, 2023 2:19pm",
            "gen_started": "a",
            "extra": {"model": "m1", "reasoning": "think 1"},
        },
        {
            "send_date": "June 19, 2023 2:20pm",
            "gen_started": "b",
            "extra": {"api": "openai", "model": "m2", "reasoning": "think 2"},
        },
    ],
    "future_key": {"kept": [1]},
}


def test_swipes_and_reasoning() -> None:
    chat = import_chat_jsonl(jsonl(HEADER, SWIPED), "c.jsonl")
    (m,) = chat.messages
    assert (m.text, m.swipes, m.swipe_id) == ("Second.", ["First.", "Second."], 1)
    assert [meta.get("reasoning") for meta in m.swipe_meta] == ["think 1", "think 2"]
    assert [meta.get("model") for meta in m.swipe_meta] == ["m1", "m2"]
    assert message_reasoning(m) == "think 2"
    assert m.created == datetime(2023, 6, 19, 14, 20, tzinfo=UTC).timestamp()
    exported = export_chat_jsonl(chat.messages, "Alex", "Mira", {}, create_date="d")
    assert records(exported) == [HEADER, SWIPED]


def test_swiping_in_the_bot_moves_the_message_level_fields() -> None:
    chat = import_chat_jsonl(jsonl(HEADER, SWIPED), "c.jsonl")
    m = chat.messages[0]
    m.swipe_id, m.text = 0, m.swipes[0]
    (rec,) = records(export_chat_jsonl([m], "Alex", "Mira"))[1:]
    assert (rec["mes"], rec["swipe_id"], rec["send_date"]) == ("First.", 0, "June 19, 2023 2:19pm")
    assert rec["extra"] == {"model": "m1", "reasoning": "think 1"}


def test_mes_wins_over_a_stale_swipe_and_a_bad_swipe_id_appends() -> None:
    stale = {"name": "M", "is_user": False, "mes": "edited", "swipes": ["old", "b"], "swipe_id": 0}
    (m,) = import_chat_jsonl(jsonl(HEADER, stale), "c").messages
    assert (m.swipes, m.swipe_id, m.text) == (["edited", "b"], 0, "edited")
    past = {"name": "M", "is_user": False, "mes": "new", "swipes": ["a"], "swipe_id": 5}
    (m,) = import_chat_jsonl(jsonl(HEADER, past), "c").messages
    assert (m.swipes, m.swipe_id) == (["a", "new"], 1)


def test_hidden_and_narrator_lines() -> None:
    hidden = {"name": "Alex", "is_user": True, "is_system": True, "mes": "ooc", "extra": {}}
    narrator = {
        "name": "System",
        "is_user": False,
        "is_system": False,
        "mes": "Night falls.",
        "extra": {"type": "narrator"},
    }
    chat = import_chat_jsonl(jsonl(HEADER, hidden, narrator), "c")
    assert [(m.role, m.extra.get("hidden", False)) for m in chat.messages] == [
        ("user", True),
        ("system", False),
    ]
    assert records(export_chat_jsonl(chat.messages, "Alex", "Mira", {}, create_date="d")) == [
        HEADER,
        hidden,
        narrator,
    ]


def test_chub_nested_messages_are_flattened() -> None:
    chub = {
        "name": "M",
        "is_user": False,
        "mes": {"message": "hi"},
        "swipes": [{"message": "hi"}, "yo"],
    }
    (m,) = import_chat_jsonl(jsonl(HEADER, chub), "c").messages
    assert (m.text, m.swipes) == ("hi", ["hi", "yo"])


def test_file_without_header_and_crlf_lines() -> None:
    data = (
        b'{"name":"Alex","is_user":true,"mes":"hi"}\r\n{"name":"M","is_user":false,"mes":"yo"}\r\n'
    )
    chat = import_chat_jsonl(data, "c")
    assert (chat.user_name, [m.text for m in chat.messages]) == ("", ["hi", "yo"])


def test_line_separator_characters_stay_inside_messages() -> None:
    text = "a\u2028b\u0085c"
    chat = import_chat_jsonl(jsonl(HEADER, {"name": "M", "is_user": False, "mes": text}), "c")
    assert chat.messages[0].text == text
    assert records(export_chat_jsonl(chat.messages, "A", "M"))[1]["mes"] == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("October 1, 2024 10:00am", datetime(2024, 10, 1, 10, 0, tzinfo=UTC)),
        ("October 1, 2024 12:05am", datetime(2024, 10, 1, 0, 5, tzinfo=UTC)),
        ("2024-6-5 @14h 56m 50s 682ms", datetime(2024, 6, 5, 14, 56, 50, tzinfo=UTC)),
        ("2024-7-12@01h31m37s", datetime(2024, 7, 12, 1, 31, 37, tzinfo=UTC)),
        ("2024-07-12T01:31:37.000Z", datetime(2024, 7, 12, 1, 31, 37, tzinfo=UTC)),
        (1_700_000_000_000, datetime.fromtimestamp(1_700_000_000, UTC)),
    ],
)
def test_send_date_formats(value: Any, expected: datetime) -> None:
    rec = {"name": "M", "is_user": False, "mes": "x", "send_date": value}
    assert import_chat_jsonl(jsonl(HEADER, rec), "c").messages[0].created == expected.timestamp()


@pytest.mark.parametrize(
    "value", ["yesterday", "Smarch 3, 2024 1:00pm", "February 31, 2024 1:00pm", 10**400, -5]
)
def test_unknown_send_dates_are_zero(value: Any) -> None:
    rec = {"name": "M", "is_user": False, "mes": "x", "send_date": value}
    assert import_chat_jsonl(jsonl(HEADER, rec), "c").messages[0].created == 0.0


# -- export of messages the bot made --------------------------------------------------------------


def test_bot_made_messages_export_in_sillytavern_shape() -> None:
    when = datetime(2024, 10, 1, 13, 7, tzinfo=UTC).timestamp()
    messages = [
        ChatMessage(
            0,
            "assistant",
            "Mira",
            "Hello.",
            swipes=["Hello.", "Hi."],
            swipe_meta=[{"greeting": True}, {"greeting": True}],
            created=when,
        ),
        ChatMessage(1, "user", "Alex", "Hey", user_id="42", created=when),
        ChatMessage(
            2,
            "assistant",
            "Mira",
            "Well.",
            swipes=["Well."],
            created=when,
            swipe_meta=[
                {"backend": "local", "model": "smol", "reasoning": "hmm", "completion_tokens": 3}
            ],
        ),
        ChatMessage(3, "system", "", "Night falls.", created=when, extra={"hidden": True}),
    ]
    out = records(export_chat_jsonl(messages, "Alex", "Mira", {"note_prompt": "x"}))
    assert out[0] == {
        "user_name": "Alex",
        "character_name": "Mira",
        "create_date": "2024-10-01@13h07m00s",
        "chat_metadata": {"note_prompt": "x"},
    }
    date = "October 1, 2024 1:07pm"
    assert out[1] == {
        "name": "Mira",
        "is_user": False,
        "is_system": False,
        "send_date": date,
        "mes": "Hello.",
        "extra": {},
        "swipe_id": 0,
        "swipes": ["Hello.", "Hi."],
        "swipe_info": [{"send_date": date, "extra": {}}, {"send_date": date, "extra": {}}],
    }
    assert out[2] == {
        "name": "Alex",
        "is_user": True,
        "is_system": False,
        "send_date": date,
        "mes": "Hey",
        "extra": {},
    }
    assert out[3]["extra"] == {"model": "smol", "reasoning": "hmm", "api": "local"}
    assert out[3]["swipe_info"][0]["extra"] == {
        "model": "smol",
        "reasoning": "hmm",
        "api": "local",
        "token_count": 3,
    }
    assert out[4] == {
        "name": "",
        "is_user": False,
        "is_system": True,
        "send_date": date,
        "mes": "Night falls.",
        "extra": {"type": "narrator"},
    }
    again = import_chat_jsonl(export_chat_jsonl(messages, "Alex", "Mira"), "again")
    assert [(m.role, m.text, m.swipes, m.extra.get("hidden", False)) for m in again.messages] == [
        ("assistant", "Hello.", ["Hello.", "Hi."], False),
        ("user", "Hey", [], False),
        ("assistant", "Well.", ["Well."], False),
        ("system", "Night falls.", [], True),
    ]
    assert message_reasoning(again.messages[2]) == "hmm"


# -- bad files ------------------------------------------------------------------------------------


def test_bad_lines_name_the_file_and_line() -> None:
    good = json.dumps(HEADER).encode()
    assert error(good + b'\n{"mes": "a"}\n{"mes": ') == (
        "chat.jsonl: line 3: not valid JSON (Expecting value at column 9)"
    )
    assert error(good + b"\n[1, 2]") == "chat.jsonl: line 2: expected a JSON object"
    assert error(good + b'\n{"mes": 5}') == "chat.jsonl: line 2: mes: expected text"
    assert (
        error(good + b'\n{"mes": "a", "swipes": "a"}')
        == "chat.jsonl: line 2: swipes: expected a list"
    )
    assert (
        error(good + b'\n{"mes": "a", "swipes": ["a", 1]}')
        == "chat.jsonl: line 2: swipes[1]: expected text"
    )
    assert (
        error(good + b'\n{"mes": "a", "swipe_id": "0"}')
        == "chat.jsonl: line 2: swipe_id: expected a whole number"
    )
    assert error(good + b'\n{"mes": "a", "name": 3}') == "chat.jsonl: line 2: name: expected text"
    assert (
        error(good + b'\n{"mes": NaN}') == "chat.jsonl: line 2: not valid JSON (NaN is not JSON)"
    )
    assert (
        error(good + b'\n{"mes": "\xff"}')
        == "chat.jsonl: line 2: not UTF-8 text (bad byte at offset 9)"
    )
    assert (
        error(b'{"user_name": "A", "chat_metadata": []}')
        == "chat.jsonl: line 1: chat_metadata: expected an object"
    )
    assert error(b"\n\n") == "chat.jsonl: empty file — not a chat"
    assert error(b"[" * 100_000).startswith("chat.jsonl: line 1: not valid JSON (")


def test_limits() -> None:
    data = jsonl(HEADER, *({"name": "M", "is_user": False, "mes": "x"} for _ in range(5)))
    assert error(data, max_lines=3) == "chat.jsonl: more than 3 lines"
    assert error(data, max_bytes=100) == f"chat.jsonl: {len(data)} bytes is over the limit of 100"
    long_line = jsonl(HEADER, {"mes": "x" * 200})
    assert error(long_line, max_line_bytes=150) == "chat.jsonl: line 2: over 150 bytes"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_KEYS = [
    "name",
    "is_user",
    "is_system",
    "mes",
    "swipes",
    "swipe_id",
    "swipe_info",
    "extra",
    "send_date",
]
_LINES = st.lists(
    st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=6).map(json.dumps)
    | st.text(max_size=20),
    max_size=5,
)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(_LINES.map(lambda lines: "\n".join(lines).encode()) | st.binary(max_size=200))
def test_arbitrary_files_raise_only_chat_file_error(data: bytes) -> None:
    try:
        chat = import_chat_jsonl(data, "fuzz.jsonl")
    except ChatFileError as exc:
        assert exc.message.startswith("fuzz.jsonl")
        return
    # whatever imports, exports, and imports again to the same messages
    again = import_chat_jsonl(
        export_chat_jsonl(chat.messages, chat.user_name, chat.character_name, chat.metadata),
        "again",
    )
    assert [(m.role, m.name, m.text, m.swipes, m.swipe_id) for m in again.messages] == [
        (m.role, m.name, m.text, m.swipes, m.swipe_id) for m in chat.messages
    ]
