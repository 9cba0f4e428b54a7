"""A model's own chat template (Jinja), as llama.cpp's ``/props`` exposes it: an alternative
to SillyTavern's instruct templates for text completion, never the default.

Rendered in Jinja2's immutable sandbox with the globals Hugging Face templates expect
(``raise_exception``, ``strftime_now``, ``bos_token``/``eos_token``), so a template from a
server cannot reach Python objects or change state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.backends.base import PromptMessage
from bot.errors import ConfigError

MAX_TEMPLATE = 256 * 1024


class ChatTemplateError(ConfigError):
    hint = "the model's chat template could not be used; use an instruct template instead"


def _raise(message: str) -> None:
    raise ChatTemplateError(f"chat template: {message}")


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A compiled chat template. ``stop`` lists the stop strings to send with it (the
    template does not say; llama.cpp stops at the model's end-of-turn token itself)."""

    source: str
    bos_token: str = ""
    eos_token: str = ""
    stop: tuple[str, ...] = ()
    _template: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.source) > MAX_TEMPLATE:
            raise ChatTemplateError(f"chat template: {len(self.source)} characters is too long")
        try:
            from jinja2 import TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:  # pragma: no cover - jinja2 is a dependency
            raise ChatTemplateError("chat template: jinja2 is not installed") from None
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().astimezone().strftime(fmt)
        try:
            compiled = env.from_string(self.source)
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template: {exc}") from None
        object.__setattr__(self, "_template", compiled)

    @classmethod
    def from_props(cls, props: dict[str, Any]) -> ChatTemplate:
        """From llama.cpp's ``GET /props`` body (``chat_template``, ``bos_token``, …)."""
        source = props.get("chat_template")
        if not isinstance(source, str) or not source.strip():
            raise ChatTemplateError("/props: no chat_template")
        bos, eos = props.get("bos_token", ""), props.get("eos_token", "")
        return cls(
            source, bos if isinstance(bos, str) else "", eos if isinstance(eos, str) else ""
        )

    def render(
        self, messages: Sequence[PromptMessage], *, add_generation_prompt: bool = True
    ) -> str:
        from jinja2 import TemplateError

        data = [
            {"role": m.role, "content": m.content, **({"name": m.name} if m.name else {})}
            for m in messages
        ]
        try:
            return str(
                self._template.render(
                    messages=data,
                    add_generation_prompt=add_generation_prompt,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                )
            )
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template: {exc}") from None
