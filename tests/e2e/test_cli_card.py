"""`sillybot card NAME --out FILE`: a character as a SillyTavern PNG card, both chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.prompt.card import load_card
from tests.conftest import FIXTURES


def test_export_a_configured_card_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    card = FIXTURES / "cards" / "default_Seraphina.png"
    config.write_text(f"characters:\n  sera:\n    card: {card}\n")
    monkeypatch.setenv("SILLYBOT_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out.png"
    assert main(["--config", str(config), "card", "sera", "--out", str(out)]) == 0
    data = out.read_bytes()
    assert b"tEXtchara\x00" in data and b"tEXtccv3\x00" in data
    exported, original = load_card(out), load_card(card)
    assert exported.name == original.name == "Seraphina"
    assert exported.description == original.description
    assert exported.character_book == original.character_book
    assert "wrote" in capsys.readouterr().out
