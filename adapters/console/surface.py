"""The terminal as a Surface: a streamed reply appears as text typed out in place.

A terminal cannot rewrite what it printed without ANSI codes, so :meth:`ConsoleSurface.edit`
prints only the new suffix when the edit extends the message at the bottom of the output
(the streaming case); any other edit prints a fresh line ``[edited N] `` and the whole text.

The last line of a reply is left open so that edits can keep appending to it. The next
:meth:`~ConsoleSurface.send` starts on a fresh line by itself; anything else that writes to the
same stream (a prompt, a status line) calls :meth:`~ConsoleSurface.end_message` first.
"""

from __future__ import annotations

from typing import TextIO

_REMEMBERED = 256  # edits to older messages still print, in full, without knowing the old text


class ConsoleSurface:
    """A :class:`bot.delivery.ports.Surface` writing to ``out``; ids are "1", "2", ….

    ``name_prefix`` is printed before each message, as given (e.g. ``"Seraphina: "``).
    """

    def __init__(
        self,
        out: TextIO,
        *,
        limit: int = 100_000,
        min_interval: float = 0.0,
        name_prefix: str = "",
    ) -> None:
        self.limit = limit
        self.min_interval = min_interval
        self._out = out
        self._prefix = name_prefix
        self._count = 0
        self._shown: dict[str, str] = {}  # insertion-ordered: the oldest is forgotten first
        self._bottom: str | None = None  # the message whose text ends the output, if any
        self._line_open = False

    async def send(self, text: str) -> str:
        self._count += 1
        message_id = str(self._count)
        self._start_line()
        self._write(self._prefix + text)
        self._remember(message_id, text)
        self._bottom = message_id
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        old = self._shown.get(message_id)
        if old == text:
            return
        if old is not None and message_id == self._bottom and text.startswith(old):
            self._write(text[len(old) :])
        else:
            self._start_line()
            self._write(f"[edited {message_id}] {self._prefix}{text}")
            self._bottom = message_id
        self._remember(message_id, text)

    def end_message(self) -> None:
        """Finish the line the last message left open; later edits to it print in full."""
        self._start_line()
        self._bottom = None

    def _start_line(self) -> None:
        if self._line_open:
            self._write("\n")

    def _write(self, text: str) -> None:
        if not text:
            return
        self._out.write(text)
        self._out.flush()
        self._line_open = not text.endswith("\n")

    def _remember(self, message_id: str, text: str) -> None:
        self._shown.pop(message_id, None)
        self._shown[message_id] = text
        if len(self._shown) > _REMEMBERED:
            del self._shown[next(iter(self._shown))]
