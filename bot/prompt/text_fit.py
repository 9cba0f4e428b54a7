"""Text completion truncation and assembly, with SillyTavern's own arithmetic.

The fixed parts plus the token padding are counted first, then the in-chat injections, then
history newest → oldest until one item does not fit, then example items in order until one
does not fit (``Generate`` in SillyTavern 1.12.6), so the same messages are cut at the same
place. The assembled string is then checked whole: a prompt never exceeds the context as the
injected counter counts it (examples go first, then the oldest messages).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import ConfigError, MessageTooLong, UserFacingError
from bot.prompt.model import Block, BlockKind, PromptInputs
from bot.prompt.render import TextFormatter
from bot.prompt.story import TextHead, TextItems
from bot.prompt.tokens import TokenCounter


@dataclass(slots=True)
class TextFit:
    """The assembled prompt and what went into it (for the report)."""

    text: str
    parts: list[tuple[BlockKind, str, int | None]]  # (kind, text, message id) sent
    kept_ids: set[int]
    examples_sent: int
    examples_total: int


def fit(
    lay: TextHead,
    chat: TextItems,
    fmt: TextFormatter,
    inputs: PromptInputs,
    counter: TokenCounter,
    finish: Callable[[str], str],
    probe: str,
) -> TextFit | None:
    """Truncate as SillyTavern does, then assemble the final string; None when the history
    window ran out before the budget did."""
    count = counter.count
    limit = inputs.context_size - inputs.max_tokens
    pad = inputs.token_padding
    newest = list(reversed(chat.items))
    pieces: dict[int, str] = {}

    def piece(i: int) -> str:
        s = pieces.get(i)
        if s is None:
            s = pieces[i] = fmt.piece(newest[i])
        return s

    pinned = inputs.examples == "always"
    example_pieces = [fmt.piece(b) for b in lay.examples]
    align = fmt.piece(lay.alignment) if lay.alignment is not None else ""
    cycle = fmt.piece(chat.cycle) if chat.cycle is not None else ""
    head = lay.before + lay.story + lay.after
    fixed = head + ("".join(example_pieces) if pinned else "") + align + lay.chat_sep
    total = count(fixed + probe + cycle) + pad
    if total >= limit:
        raise ConfigError(
            f"the context is too small for {inputs.character.name}: the story string, "
            f"formatting and padding need about {total} tokens but only {limit} fit "
            f"(context_size {inputs.context_size} − max_tokens {inputs.max_tokens})",
            hint="raise the backend's context_size, lower max_tokens or shorten the card",
        )
    kept: set[int] = set()
    for i in chat.injected:  # injections first: ST pre-allocates them
        if i >= len(newest):
            continue
        total += count(piece(i))
        if total < limit:
            kept.add(i)
        else:
            break
    exhausted = True
    for i in range(len(newest)):
        if i in kept:
            continue
        total += count(piece(i))
        if total < limit:
            kept.add(i)
        else:
            exhausted = False
            break
    if exhausted and chat.start > 0:
        return None  # the window was too small: the caller widens it
    newest_message = next((i for i, b in enumerate(newest) if b.message_id is not None), None)
    if newest_message is not None and newest_message not in kept:
        raise MessageTooLong(
            "That message is too long for this chat: with the character's definitions it "
            "does not fit in the context. Please send a shorter one."
        )
    with_align = lay.alignment is not None and max(kept, default=-1) not in chat.user_positions
    order = sorted(kept, reverse=True)  # oldest first
    n_examples = len(example_pieces) if pinned else 0
    if not pinned:
        sent = (align if with_align else "") + lay.chat_sep + "".join(piece(i) for i in order)
        total = count(head + align + sent + probe + cycle) + pad
        for ex in example_pieces:
            total += count(ex)
            if total >= limit:
                break
            n_examples += 1
    return _assemble(
        lay,
        chat,
        inputs,
        counter,
        finish,
        pieces,
        newest,
        order,
        with_align,
        align,
        example_pieces,
        n_examples,
        cycle,
        probe,
    )


def _assemble(
    lay: TextHead,
    chat: TextItems,
    inputs: PromptInputs,
    counter: TokenCounter,
    finish: Callable[[str], str],
    pieces: dict[int, str],
    newest: list[Block],
    order: list[int],
    with_align: bool,
    align: str,
    example_pieces: list[str],
    n_examples: int,
    cycle: str,
    probe: str,
) -> TextFit:
    t = inputs.instruct
    continuing = inputs.kind == "continue"
    limit = inputs.context_size - inputs.max_tokens
    cache = ""
    if chat.cycle is not None:  # ST's cleanupPromptCache
        cache = cycle
        name = f"{inputs.character.name}:"
        if cache.lstrip().startswith(name):
            cache = cache.replace(name, "", 1).lstrip()
        if t is None and not cache[:1].isspace():
            cache = " " + cache
    head = lay.before + lay.story + lay.after
    while True:
        send = [pieces[i] for i in order]
        if with_align:
            send.insert(0, align)
        if send and not continuing and (t is None or t.wrap):
            send[-1] = send[-1].removesuffix("\n")
        if send:
            send[-1] = finish(send[-1])
        body = lay.chat_sep + "".join(send)
        examples = "".join(example_pieces[:n_examples])
        text = (head + examples + body + cache).replace("\r", "")
        # Never over the context. ST re-checks continuations this way (with its padding and
        # a newline plus the last line); any other prompt must fit as counted.
        if continuing:
            size = counter.count(head + examples + body + "\n" + probe + cache) + (
                inputs.token_padding
            )
        else:
            size = counter.count(text)
        if size <= limit or (n_examples == 0 and len(order) <= 1):
            break
        if n_examples:
            n_examples -= 1
        else:
            order = order[1:]
    if size > limit:
        raise UserFacingError("The prompt does not fit in the context; shorten the message.")
    parts: list[tuple[BlockKind, str, int | None]] = [
        (BlockKind.ANCHOR, lay.before, None),
        (BlockKind.STORY, lay.story, None),
        (BlockKind.ANCHOR, lay.after, None),
    ]
    parts += [(b.kind, example_pieces[i], None) for i, b in enumerate(lay.examples[:n_examples])]
    parts.append((BlockKind.CHAT_START, lay.chat_sep, None))
    if with_align and lay.alignment is not None:
        parts.append((BlockKind.ALIGNMENT, align, None))
    parts += [(newest[i].kind, pieces[i], newest[i].message_id) for i in order]
    if chat.cycle is not None:
        parts.append((chat.cycle.kind, cache, chat.cycle.message_id))
    kept_ids = {mid for _, _, mid in parts if mid is not None}
    return TextFit(text, parts, kept_ids, n_examples, len(example_pieces))
