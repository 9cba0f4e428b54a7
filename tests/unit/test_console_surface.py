"""ConsoleSurface: what the terminal shows for sends, streaming edits and rewrites."""

from __future__ import annotations

import asyncio
import io

from adapters.console.surface import ConsoleSurface
from bot.delivery.pacer import Pacer
from bot.delivery.ports import Surface
from bot.delivery.stream import Delivery


async def test_send_prints_the_prefixed_text_and_numbers_messages() -> None:
    out = io.StringIO()
    console = ConsoleSurface(out, name_prefix="Seraphina: ")
    assert await console.send("Welcome.") == "1"
    assert await console.send("Sit by the fire.") == "2"
    assert out.getvalue() == "Seraphina: Welcome.\nSeraphina: Sit by the fire."


async def test_streaming_edits_print_only_what_was_appended() -> None:
    out = io.StringIO()
    console = ConsoleSurface(out, name_prefix="Bot: ")
    message = await console.send("Hel")
    await console.edit(message, "Hello")
    await console.edit(message, "Hello")  # unchanged: nothing printed
    await console.edit(message, "Hello,\nworld")
    assert out.getvalue() == "Bot: Hello,\nworld"


async def test_a_rewrite_prints_a_marked_fresh_copy() -> None:
    out = io.StringIO()
    console = ConsoleSurface(out)
    first = await console.send("Once upon")
    await console.send("a time")
    await console.edit(first, "Once upon a midnight")  # not at the bottom any more
    await console.edit(first, "Twice")  # at the bottom, but not an extension
    assert out.getvalue() == (
        "Once upon\na time\n[edited 1] Once upon a midnight\n[edited 1] Twice"
    )


async def test_end_message_closes_the_line_once() -> None:
    out = io.StringIO()
    console = ConsoleSurface(out)
    message = await console.send("Done.")
    console.end_message()
    console.end_message()
    out.write("> ")  # the front end's prompt
    await console.edit(message, "Done. More.")  # after the end: printed in full
    assert out.getvalue() == "Done.\n> [edited 1] Done. More."


async def test_old_messages_are_forgotten_but_still_editable() -> None:
    out = io.StringIO()
    console = ConsoleSurface(out)
    for i in range(300):
        await console.send(f"m{i}")
    await console.edit("1", "m0 again")
    assert out.getvalue().endswith("\nm299\n[edited 1] m0 again")


class CountingOut(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_a_streamed_reply_reads_as_one_typed_out_message() -> None:
    out = CountingOut()
    console = ConsoleSurface(out, name_prefix="Lyra: ")
    surface: Surface = console
    delivery = Delivery(surface, Pacer(), "console")
    reply = "The lantern flickers. *She leans closer.* Did you hear that?"
    for end in range(5, len(reply), 7):
        await delivery.update(reply[:end])
        for _ in range(5):  # let the flusher show this frame
            await asyncio.sleep(0)
    assert await delivery.finish(reply) == ["1"]
    console.end_message()
    assert out.getvalue() == f"Lyra: {reply}\n"
    assert out.writes > 3  # it was typed out frame by frame, not printed once
