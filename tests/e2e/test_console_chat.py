"""`sillybot chat` as a user runs it: a real process, stdin/stdout, a config file, the
embedded Redis, and an OpenAI-compatible server on loopback (the wire-faithful fake)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_wire import Endless, Status, Text

ROOT = Path(__file__).resolve().parents[2]


async def chat(tmp: Path, config: Path, stdin: str, *args: str) -> tuple[int, str, str]:
    return await run(tmp, config, "chat", *args, stdin=stdin)


async def run(tmp: Path, config: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    env = {
        **os.environ,
        "SILLYBOT_CONFIG": str(config),
        "SILLYBOT_DATA_DIR": str(tmp / "data"),
        "REDIS_URL": "",
        "TEST_SERVER_KEY": "sk-test-4f9a1c0d2e7b",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_config(tmp: Path, base_url: str) -> Path:
    config = tmp / "config.yaml"
    config.write_text(
        "defaults:\n  backend: fake\n"
        "backends:\n  fake:\n    provider: custom\n"
        f"    base_url: {base_url}\n    model: gpt-test\n    api_key_env: TEST_SERVER_KEY\n"
    )
    return config


async def test_chat_streams_replies_and_remembers_them_after_a_restart(tmp_path: Path) -> None:
    async with FakeOpenAI() as server:
        config = write_config(tmp_path, server.base_url)
        server.enqueue(
            Text(deltas=["Sit ", "by the ", "fire."]),
            Text(deltas=["Another ", "version."]),
        )
        code, out, err = await chat(
            tmp_path, config, "Hello, Aria!\n/regen\n/prev\n", "--user", "Alex"
        )
        assert code == 0, err
        assert "Talking to Aria" in out
        assert "What brings you to the Copper Kettle, Alex?" in out  # the greeting
        assert "Sit by the fire." in out
        assert "Another version." in out
        assert "(1/2) Sit by the fire." in out  # /prev swiped back to the first version
        body = server.requests[0].body
        assert body["model"] == "gpt-test" and body["stream"] is True
        assert body["messages"][-1] == {"role": "user", "content": "Hello, Aria!"}
        assert server.requests[0].headers["authorization"] == "Bearer sk-test-4f9a1c0d2e7b"

        # a new process on the same data directory: the chat is still there
        code, out, err = await chat(tmp_path, config, "/history\n")
        assert code == 0, err
        assert "Alex: Hello, Aria!" in out
        assert "Aria: Sit by the fire." in out

        # the operator's usage report: two replies from the fake backend
        code, out, err = await run(tmp_path, config, "usage")
        assert code == 0, err
        assert "fake / gpt-test:" in out and "(2)" in out


async def test_a_wrong_key_gives_a_one_line_hint_and_the_chat_goes_on(tmp_path: Path) -> None:
    async with FakeOpenAI() as server:
        config = write_config(tmp_path, server.base_url)
        server.enqueue(
            Status(
                401,
                {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
            ),
            Text(deltas=["Better now."]),
        )
        code, out, err = await chat(tmp_path, config, "hi\n/regen\n")
        assert code == 0, err
        assert "check the API key" in out
        assert "Traceback" not in out + err
        assert "Better now." in out


async def test_a_broken_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("backends:\n  x:\n    provider: custom\n    base_url: localhost:8080\n")
    code, _out, err = await chat(tmp_path, config, "")
    assert code == 1
    assert "backends.x.base_url" in err and "http://" in err
    assert "Traceback" not in err


async def test_ctrl_c_stops_the_streaming_reply_and_keeps_it(tmp_path: Path) -> None:
    async with FakeOpenAI() as server:
        config = write_config(tmp_path, server.base_url)
        server.enqueue(Endless(interval=0.05))
        env = {
            **os.environ,
            "SILLYBOT_CONFIG": str(config),
            "SILLYBOT_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": "",
            "TEST_SERVER_KEY": "sk-test-4f9a1c0d2e7b",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "chat",
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"tell me a long story\n")
        await proc.stdin.drain()
        seen = b""
        while b"w3 " not in seen:  # the reply is streaming
            seen += await asyncio.wait_for(proc.stdout.read(64), 20)
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)
        proc.stdin.write(b"/history\n")
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        text = (seen + out).decode()
        assert proc.returncode == 0, err.decode()
        assert "[stopped]" in text
        assert "Traceback" not in text + err.decode()
        # the stored reply is what arrived before the stop
        assert "Aria: w1 w2 w3" in text.split("[stopped]", 1)[1]


async def test_commands_run_in_the_order_typed(tmp_path: Path) -> None:
    async with FakeOpenAI() as server:
        config = write_config(tmp_path, server.base_url)
        server.enqueue(Text(deltas=["A warm ", "welcome."]))
        code, out, err = await chat(tmp_path, config, "hi\n/usage\n")
        assert code == 0, err
        # /usage waited for the reply it was typed after, and counted it
        assert out.index("A warm welcome.") < out.index("fake / gpt-test:")
        assert "[edited" not in out
