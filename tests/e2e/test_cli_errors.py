"""Mistakes a user makes in settings and config: one clear line, no traceback, no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Settings

KEY = "sk-or-v1-0123456789abcdefghijklmnop"


def check(tmp: Path, **env: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        cwd=tmp,
        env={**os.environ, "SILLYBOT_DATA_DIR": str(tmp / "data"), "REDIS_URL": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SILLYBOT_LOCAL_MODEL_PORT": "abc"}, "SILLYBOT_LOCAL_MODEL_PORT"),
        ({"SILLYBOT_LOG_LEVEL": "LOUD"}, "is not a log level"),
        ({"SILLYBOT_CONFIG": "missing.yaml"}, "config file not found"),
        ({"REDIS_URL": "nonsense"}, "REDIS_URL is not a Redis URL"),
    ],
)
def test_bad_settings_are_one_line(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    code, out = check(tmp_path, **env)
    assert code == 1
    assert expected in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (f"backends:\n  b:\n    provider: openai\n    api_key: {KEY}\n", "not a known setting"),
        (f"backends:\n  b:\n    provider: openai\n    api_key_env: {KEY}\n", "api_key_env"),
        ("backends:\n  b:\n    provider: nope\n", "unknown provider 'nope'"),
        ("defaults:\n  backend: ghost\nbackends:\n  b: {provider: openai}\n", "ghost"),
        ("characters:\n  x:\n    card: missing.png\n", "missing.png"),
        ("backends:\n  b: [unclosed\n", "not valid YAML at line 3"),
    ],
)
def test_config_mistakes_are_reported_without_secrets(
    tmp_path: Path, config: str, expected: str
) -> None:
    (tmp_path / "config.yaml").write_text(config)
    code, out = check(tmp_path, OPENAI_API_KEY="x")
    assert code == 1
    assert expected in out
    assert KEY not in out and "Traceback" not in out


def test_dotenv_keys_are_read_like_python_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "A=plain\nexport B=exported\nC=value  # a comment\nD='quoted # not a comment'\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in "ABCD":
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    got = {n: settings.secret(n) for n in "ABCD"}
    assert {n: s.get_secret_value() for n, s in got.items() if s} == {
        "A": "plain",
        "B": "exported",
        "C": "value",
        "D": "quoted # not a comment",
    }
