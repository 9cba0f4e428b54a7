"""Renderers: the prompt model's blocks → chat-completion messages or a text-completion string.

Both also price blocks in tokens, so the builder can trim with the same arithmetic the
rendering implies. Prices may overestimate slightly (one ceiling per block), never
underestimate, so a prompt that fits by the builder's sum fits when counted whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.backends.base import PromptMessage
from bot.prompt.macros import MacroContext, expand
from bot.prompt.model import HEADER_KINDS, Block, ContextTemplate, InstructTemplate
from bot.prompt.tokens import TokenCounter


def _header_len(blocks: Sequence[Block]) -> int:
    """How many leading blocks form the definitions header (system prompt, card, persona)."""
    n = 0
    while n < len(blocks) and blocks[n].kind in HEADER_KINDS:
        n += 1
    return n


class ChatRenderer:
    """Chat completion. The leading definition blocks share one system message (joined by a
    newline, like SillyTavern's "squash system messages"): many local chat templates accept
    only one system message at the start.
    """

    # SillyTavern's OpenAI message pricing: 3 per message, 1 per name, 3 to prime the reply
    MESSAGE_TOKENS = 3
    NAME_TOKENS = 1
    REPLY_TOKENS = 3

    def cost(self, block: Block, counter: TokenCounter) -> int:
        if block.kind in HEADER_KINDS:  # a line of the shared first message
            return counter.count(block.text + "\n")
        return (
            counter.count(self._content(block))
            + self.MESSAGE_TOKENS
            + (self.NAME_TOKENS if block.name else 0)
        )

    def overhead(self, counter: TokenCounter, *, continuing: bool) -> int:
        return self.REPLY_TOKENS + self.MESSAGE_TOKENS  # reply priming + the header message

    def render(self, blocks: Sequence[Block]) -> tuple[PromptMessage, ...]:
        n = _header_len(blocks)
        out: list[PromptMessage] = []
        if n:
            out.append(PromptMessage("system", "\n".join(b.text for b in blocks[:n])))
        out.extend(PromptMessage(b.role, self._content(b), b.name) for b in blocks[n:])
        return tuple(out)

    @staticmethod
    def _content(block: Block) -> str:
        return f"{block.speaker}: {block.text}" if block.speaker else block.text


class TextRenderer:
    """Text completion through an instruct template, the way SillyTavern formats it.

    The definitions form the story string (parts joined by newlines, wrapped as one system
    turn); every other block is a turn ``prefix [\\n] [Speaker: ]text suffix``; the prompt ends
    with the reply header (``<|im_start|>assistant\\nSeraphina:``) or, when continuing, with
    the partial reply and no end-of-turn.
    """

    def __init__(
        self, instruct: InstructTemplate, context: ContextTemplate, user: str, char: str
    ) -> None:
        self._t = instruct
        self._context = context
        self._ctx = MacroContext(user=user, char=char)
        self._user = user
        self._char = char
        self._sep = "\n" if instruct.wrap else ""

    # -- pricing ------------------------------------------------------------------------------

    def cost(self, block: Block, counter: TokenCounter) -> int:
        if block.kind in HEADER_KINDS:
            return counter.count(block.text + "\n")
        return counter.count(self._turn(block))

    def overhead(self, counter: TokenCounter, *, continuing: bool) -> int:
        prefix, suffix = self._story_wrap()
        chrome = prefix + suffix + ("" if continuing else self._reply_header())
        return counter.count(chrome)

    # -- rendering ----------------------------------------------------------------------------

    def render(self, blocks: Sequence[Block]) -> str:
        n = _header_len(blocks)
        out: list[str] = []
        if n:
            out.append(self._story(blocks[:n]))
        out.extend(self._turn(b) for b in blocks[n:])
        text = "".join(out)
        if blocks and blocks[-1].partial:
            return text
        if self._t.wrap and text and not text.endswith("\n"):
            # SillyTavern starts the header on a new line (and drops a newline already there)
            text += "\n"
        return text + self._reply_header()

    def stop_strings(self, other_speakers: Iterable[str] = ()) -> tuple[str, ...]:
        """SillyTavern's stop list: ``\\nUser:`` for every human, then the template sequences."""
        out = [f"\n{self._user}:", *(f"\n{name}:" for name in other_speakers)]
        t = self._t
        sequences = [
            t.stop_sequence,
            t.input_sequence.replace("{{name}}", self._user),
            t.output_sequence.replace("{{name}}", self._char),
            t.first_output_sequence.replace("{{name}}", self._char),
            t.last_output_sequence.replace("{{name}}", self._char),
            t.system_sequence.replace("{{name}}", "System"),
            t.last_system_sequence.replace("{{name}}", "System"),
        ]
        for line in dict.fromkeys("\n".join(sequences).split("\n")):
            if line.strip():
                stop = self._sep + line
                out.append(expand(stop, self._ctx) if t.macro else stop)
        if self._context.use_stop_strings:
            markers = (self._context.chat_start, self._context.example_separator)
            out.extend("\n" + expand(m, self._ctx) for m in markers if m)
        return tuple(s for s in dict.fromkeys(out) if s)

    def _story(self, header: Sequence[Block]) -> str:
        # the default story string: each part plus "\n", then {{trim}} eats the trailing ones
        body = "".join(b.text + "\n" for b in header).strip("\n")
        prefix, suffix = self._story_wrap()
        return prefix + body + suffix

    def _story_wrap(self) -> tuple[str, str]:
        prefix = self._seq(self._t.system_sequence, "System")
        suffix = self._seq(self._t.system_suffix, "System") or self._sep
        return (prefix + self._sep if prefix else ""), suffix

    def _turn(self, block: Block) -> str:
        if block.verbatim:
            return block.text + "\n" if block.text else ""
        t = self._t
        if block.role == "system" and not t.system_same_as_user:
            prefix, suffix = t.system_sequence, t.system_suffix
        elif block.role in ("user", "system"):
            prefix, suffix = t.input_sequence, t.input_suffix
        else:
            prefix, suffix = t.output_sequence, t.output_suffix
        who = block.speaker or "System"
        prefix = self._seq(prefix, who)
        suffix = "" if block.partial else (self._seq(suffix, who) or self._sep)
        content = f"{block.speaker}: {block.text}" if block.speaker else block.text
        return self._sep.join(p for p in (prefix, content + suffix) if p)

    def _reply_header(self) -> str:
        sequence = self._seq(self._t.last_output_sequence or self._t.output_sequence, self._char)
        if self._t.names_behavior != "always":
            return sequence.rstrip() + "\n" if self._t.wrap else sequence
        header = sequence + self._sep + f"{self._char}:"
        return header.rstrip() if self._t.wrap else header

    def _seq(self, sequence: str, name: str) -> str:
        if self._t.macro:
            sequence = expand(sequence, self._ctx)
        return sequence.replace("{{name}}", name)
