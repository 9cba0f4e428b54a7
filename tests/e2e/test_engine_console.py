"""The roleplay commands of `sillybot chat` as a user types them: a real process, the embedded
Redis, and the OpenAI-compatible fake on loopback speaking the real wire format."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_console_chat import chat
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_wire import Text


def setup(tmp: Path, base_url: str) -> Path:
    for key, name, description, greeting in (
        ("mira", "Mira", "{{char}} keeps the lighthouse.", "Welcome, {{user}}."),
        ("tom", "Tom", "{{char}} is an old sailor.", "Ahoy!"),
    ):
        card = {"name": name, "description": description, "first_mes": greeting}
        (tmp / f"{key}.json").write_text(json.dumps({"spec": "chara_card_v2", "data": card}))
    config = tmp / "config.yaml"
    config.write_text(
        "defaults:\n  backend: fake\n  character: mira\n"
        "characters:\n  mira:\n    card: mira.json\n  tom:\n    card: tom.json\n"
        "backends:\n  fake:\n    provider: custom\n"
        f"    base_url: {base_url}\n    model: gpt-test\n    api_key_env: TEST_SERVER_KEY\n"
    )
    return config


IMPORT = "\n".join(
    json.dumps(line)
    for line in (
        {"user_name": "Sam", "character_name": "Mira"},
        {"name": "Mira", "is_user": False, "mes": "Storm tonight.", "swipes": ["Storm tonight."]},
        {"name": "Sam", "is_user": True, "mes": "Then I stay."},
    )
)


async def test_group_impersonate_export_and_import_from_the_console(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(IMPORT)
    (tmp_path / "bad.jsonl").write_text(IMPORT + "\n{oops")
    async with FakeOpenAI() as server:
        config = setup(tmp_path, server.base_url)
        server.enqueue(
            Text(deltas=["The lamp ", "is lit."], reasoning=["Keep it calm."]),
            Text(deltas=["Aye."]),
            Text(deltas=["I sit ", "down."]),
        )
        typed = [
            "/group add tom",
            "/group strategy list",
            "Evening, both!",
            "/impersonate",
            "/export out.jsonl",
            "/import bad.jsonl",
            "/import in.jsonl",
            "/export again.jsonl",
        ]
        code, out, err = await chat(tmp_path, config, "\n".join(typed) + "\n", "--user", "Alex")
    assert code == 0, err
    assert "Welcome, Alex." in out
    assert "Group: Mira, Tom · turn order list · cards swap" in out
    assert "Mira: The lamp is lit." in out and "Tom: Aye." in out
    assert "Keep it calm." not in out  # reasoning is hidden unless prompt.reasoning.show
    assert "✍ suggestion: I sit down." in out
    assert "exported 4 messages to out.jsonl" in out
    assert "bad.jsonl: line 4: not valid JSON" in out
    assert "Imported 2 messages from in.jsonl. The previous chat is saved as #1" in out
    exported = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().split("\n")]
    assert [(m["name"], m["mes"]) for m in exported[1:]] == [
        ("Mira", "Welcome, Alex."),
        ("Alex", "Evening, both!"),
        ("Mira", "The lamp is lit."),
        ("Tom", "Aye."),
    ]
    assert exported[3]["extra"]["reasoning"] == "Keep it calm."
    again = (tmp_path / "again.jsonl").read_text().split("\n")
    assert [json.loads(line)["mes"] for line in again[1:]] == ["Storm tonight.", "Then I stay."]
    # Tom's prompt held Mira's reply of the same turn and the group nudge for Tom
    tom = server.requests[1].body["messages"]
    assert any("The lamp is lit." in str(m["content"]) for m in tom)
    assert tom[-1]["content"] == "[Write the next reply only as Tom.]"
