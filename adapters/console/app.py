"""The terminal front end: `sillybot chat`.

Lines typed are turns; slash commands map to engine actions. Ctrl-C stops a reply that is
streaming; at the prompt it quits. Input is read on a daemon thread so that quitting never
waits for a pending ``input()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from adapters.console.surface import ConsoleSurface
from bot.config import Settings
from bot.delivery.ports import Surface, SurfaceFactory
from bot.engine.cast import load_group
from bot.engine.chat_files import ChatUpload
from bot.engine.turns import Engine
from bot.prompt.persona import Persona, persona_key
from bot.types import Action, Author, ChatKey, Inbound

HELP = """commands:
  /regen      regenerate the last reply (keeps the old one as a swipe)
  /next /prev swipe through the alternatives of the last reply (past the last: a new one)
  /continue   continue the last reply
  /stop       stop the reply being written (Ctrl-C does the same)
  /delete     delete the last exchange
  /reset      start a new chat (the old one is kept)
  /chats      list saved chats;  /resume N  go back to chat N
  /history    show the chat so far
  /usage      tokens used in this chat place, per backend and model
  /prompt     what the next prompt holds, what was cut and why
  /persona NAME | DESCRIPTION   who you are in the story (/persona alone: forget it)
  /note TEXT  the author's note, inserted near the end of every prompt (/note alone: clear)
  /impersonate  let the model suggest your next message (shown, not sent)
  /import PATH  load a SillyTavern chat (.jsonl) as the current chat (the old one is kept)
  /export PATH  save the current chat as a SillyTavern chat file
  /group      show the group;  /group add|remove|mute|unmute NAME,
              /group strategy natural|list|manual|pooled,  /group mode swap|join|join_all,
              /group narrator NAME|off,  /group off
  /talk NAME  make a group member speak now (/talk alone: the group picks)
  /quit       leave (Ctrl-D too)"""

ACTIONS: dict[str, Action] = {
    "/regen": Action.REGENERATE,
    "/next": Action.SWIPE_RIGHT,
    "/prev": Action.SWIPE_LEFT,
    "/continue": Action.CONTINUE,
    "/stop": Action.STOP,
    "/delete": Action.DELETE_LAST,
    "/reset": Action.RESET,
    "/resume": Action.RESUME,
    "/prompt": Action.PROMPT,
    "/impersonate": Action.IMPERSONATE,
    "/group": Action.GROUP,
    "/talk": Action.TALK,
}


class ConsoleFrontEnd:
    platform = "con"

    def __init__(
        self,
        settings: Settings,
        options: Mapping[str, str],
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self._options = dict(options)
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._surface = ConsoleSurface(self._out)
        self.key = ChatKey(self.platform, "local", self._options.get("channel") or "console")
        self._stopper: asyncio.Future[None] | None = None
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()

    def surfaces(self) -> SurfaceFactory:
        def factory(key: ChatKey) -> Surface:
            return self._surface

        return factory

    async def run(self, engine: Engine) -> None:
        store = engine.store
        if name := self._options.get("character"):
            engine.characters.get(name)  # fail now, with the known names, if it is wrong
            await store.set_setting(self.key, "character", name)
        if name := self._options.get("backend"):
            engine.backends.get(name)
            await store.set_setting(self.key, "backend", name)
        user = Author("console", self._options.get("user") or engine.defaults.user_name)
        settings = await store.settings(self.key)
        group = load_group(settings)
        who = (
            ", ".join(group.members)
            if group is not None
            else engine.characters.get(settings.get("character", "")).name
        )
        self._print(f"Talking to {who}. /help lists commands, Ctrl-D quits.\n")
        await self._show_history(engine)
        await engine.handle(Inbound(self.key, user, Action.GREET))
        self._lines = self._reader()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._interrupt, engine)
        try:
            while (line := await self._lines.get()) is not None:
                if not await self._dispatch(engine, user, line.strip()):
                    break
            # end of input (a pipe, Ctrl-D): let queued turns finish before leaving
            await engine.idle()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            await engine.close()
            self._print("")  # leave the shell prompt on a line of its own

    def _interrupt(self, engine: Engine) -> None:
        if engine.busy(self.key):  # Ctrl-C while a reply streams stops it; else it quits
            self._stopper = asyncio.ensure_future(engine.stop(self.key))
            self._print("\n[stopping]\n")
        else:
            self._lines.put_nowait(None)

    async def _dispatch(self, engine: Engine, user: Author, line: str) -> bool:
        if not line:
            return True
        word, _, rest = line.partition(" ")
        if word in ("/quit", "/exit"):
            return False
        if word in ("/usage", "/history", "/chats", "/export", "/persona", "/note"):
            # these read or change state directly: let queued turns finish first, so they
            # happen in the order typed and never print into a reply that is streaming
            await engine.idle()
        if word == "/help":
            self._print(HELP + "\n")
        elif word == "/persona":
            name, _, description = rest.partition("|")
            value = None
            if name.strip():
                persona = Persona(name.strip(), description.strip())
                value = json.dumps(persona.to_dict(), ensure_ascii=False)
            await engine.store.set_persona(
                self.key, user.user_id, persona_key(user.user_id), value
            )
            self._print(f"persona: {name.strip() or '(none)'}\n")
        elif word == "/note":
            note = json.dumps({"text": rest.strip()}, ensure_ascii=False) if rest.strip() else None
            await engine.store.set_setting(self.key, "authors_note", note)
            self._print("author's note " + ("set" if note else "cleared") + "\n")
        elif word == "/usage":
            self._print((await engine.store.usage(self.key)).describe() + "\n")
        elif word == "/history":
            await self._show_history(engine)
        elif word == "/chats":
            current, saved = await engine.store.chats(self.key)
            for chat_id, summary in sorted(saved.items()):
                self._print(
                    f"  #{chat_id}: {summary.get('title', '')!s} "
                    f"({summary.get('messages', 0)} messages)\n"
                )
            self._print(f"  #{current}: (current)\n")
        elif word == "/import":
            await self._import(engine, user, rest.strip())
        elif word == "/export":
            await self._export(engine, rest.strip())
        elif word in ACTIONS:
            await engine.submit(Inbound(self.key, user, ACTIONS[word], rest))
        elif word.startswith("/") and " " not in word and len(word) > 1:
            self._print(f"unknown command {word}; /help lists them\n")
        else:
            # submitted in typing order; the reply streams while the next line is read
            await engine.submit(Inbound(self.key, user, Action.MESSAGE, line))
        return True

    async def _import(self, engine: Engine, user: Author, path: str) -> None:
        if not path:
            self._print("usage: /import PATH (a SillyTavern .jsonl chat)\n")
            return
        try:
            data = await asyncio.to_thread(_read, path)
            text = data.decode("utf-8-sig")
        except OSError as exc:
            self._print(f"{path}: cannot read it ({exc.strerror})\n")
            return
        except UnicodeDecodeError as exc:
            self._print(f"{path}: not UTF-8 text (bad byte at offset {exc.start})\n")
            return
        await engine.submit(
            Inbound(self.key, user, Action.IMPORT_CHAT, ChatUpload.text(path, text))
        )

    async def _export(self, engine: Engine, path: str) -> None:
        if not path:
            self._print("usage: /export PATH\n")
            return
        await engine.idle()  # the chat as it is once the queued turns are done
        data = await engine.export_chat(self.key)
        try:
            await asyncio.to_thread(_write, path, data)
        except OSError as exc:
            self._print(f"{path}: cannot write it ({exc.strerror})\n")
            return
        lines = data.count(b"\n")  # a header line, then one per message
        self._print(f"exported {lines} messages to {path}\n")

    async def _show_history(self, engine: Engine) -> None:
        for message in await engine.store.history(self.key, 20):
            self._print(f"{message.name}: {message.text}\n\n")

    def _print(self, text: str) -> None:
        self._surface.end_message()  # never write onto the line of a streaming reply
        self._out.write(text)
        self._out.flush()

    def _reader(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def pump() -> None:
            for line in self._in:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=pump, name="console-input", daemon=True).start()
        return queue


def _read(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()


def _write(path: str, data: bytes) -> None:
    Path(path).expanduser().write_bytes(data)
