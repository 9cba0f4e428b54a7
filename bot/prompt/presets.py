"""SillyTavern's Advanced Formatting presets: instruct template, context template, system prompt.

Each loads from SillyTavern's own JSON in every shape seen in the wild: the split 1.12 files
(``presets/instruct|context|sysprompt/*.json``), the older instruct files that still carried a
``system_prompt`` (and ``separator_sequence``, ``names``/``names_force_groups``), the newer
fields (``story_string_prefix/suffix``, ``sequences_as_stop_strings``, ``post_history``,
``story_string_position``), and one object holding all three (a "master" export, or
``power_user`` in settings.json). Unknown fields are ignored; a known field with a value of the
wrong type is a :class:`PresetError` naming the file and field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from bot.errors import ConfigError
from bot.prompt.handlebars import Template, compile_template

NamesBehavior = Literal["none", "force", "always"]
MAX_PRESET_BYTES = 4 * 1024 * 1024

DEFAULT_STORY_STRING = (
    "{{#if system}}{{system}}\n{{/if}}{{#if wiBefore}}{{wiBefore}}\n{{/if}}"
    "{{#if description}}{{description}}\n{{/if}}"
    "{{#if personality}}{{char}}'s personality: {{personality}}\n{{/if}}"
    "{{#if scenario}}Scenario: {{scenario}}\n{{/if}}{{#if wiAfter}}{{wiAfter}}\n{{/if}}"
    "{{#if persona}}{{persona}}\n{{/if}}"
)


class PresetError(ConfigError):
    """A preset file that cannot be used; the message names the file and the field."""

    hint = "use a SillyTavern preset file (instruct, context, system prompt or chat completion)"


def _str(data: Mapping[str, Any], key: str, default: str, source: str) -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise PresetError(f"{source}: {key}: expected text, got {type(value).__name__}")
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool, source: str) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise PresetError(f"{source}: {key}: expected true or false, got {value!r}")


def _int(data: Mapping[str, Any], key: str, default: int, source: str) -> int:
    value = data.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PresetError(f"{source}: {key}: expected a number, got {value!r}")
    try:
        return int(float(value))
    except ValueError:
        raise PresetError(f"{source}: {key}: expected a number, got {value!r}") from None


_SEQUENCES = (
    "input_sequence",
    "input_suffix",
    "output_sequence",
    "output_suffix",
    "system_sequence",
    "system_suffix",
    "first_input_sequence",
    "last_input_sequence",
    "first_output_sequence",
    "last_output_sequence",
    "last_system_sequence",
    "stop_sequence",
    "user_alignment_message",
    "activation_regex",
    "system_sequence_prefix",
    "system_sequence_suffix",
    "story_string_prefix",
    "story_string_suffix",
)


@dataclass(frozen=True, slots=True)
class InstructTemplate:
    """Every field of SillyTavern's instruct template (``power_user.instruct``).

    ``system_sequence_prefix``/``_suffix`` wrap the system prompt (1.12.x); the newer
    ``story_string_prefix``/``_suffix`` wrap the whole story string.
    """

    name: str = ""
    input_sequence: str = ""
    input_suffix: str = ""
    output_sequence: str = ""
    output_suffix: str = ""
    system_sequence: str = ""
    system_suffix: str = ""
    first_input_sequence: str = ""
    last_input_sequence: str = ""
    first_output_sequence: str = ""
    last_output_sequence: str = ""
    last_system_sequence: str = ""
    stop_sequence: str = ""
    user_alignment_message: str = ""
    activation_regex: str = ""
    system_sequence_prefix: str = ""
    system_sequence_suffix: str = ""
    story_string_prefix: str = ""
    story_string_suffix: str = ""
    system_same_as_user: bool = False
    wrap: bool = True
    macro: bool = True
    names_behavior: NamesBehavior = "force"
    skip_examples: bool = False
    bind_to_context: bool = False
    sequences_as_stop_strings: bool = True

    @classmethod
    def from_st(cls, data: Mapping[str, Any], source: str = "instruct") -> InstructTemplate:
        """From an instruct preset, applying SillyTavern's own migrations."""
        values: dict[str, Any] = {k: _str(data, k, "", source) for k in _SEQUENCES}
        if "separator_sequence" in data and data.get("output_suffix") is None:
            values["output_suffix"] = _str(data, "separator_sequence", "", source)
        names = _str(data, "names_behavior", "", source)
        if "names" in data and not names:  # the pre-1.12 booleans
            if _bool(data, "names", False, source):
                names = "always"
            else:
                names = "force" if _bool(data, "names_force_groups", True, source) else "none"
        if names not in ("none", "force", "always", ""):
            raise PresetError(f"{source}: names_behavior: expected none, force or always")
        return cls(
            name=_str(data, "name", "", source) or _str(data, "preset", "", source),
            system_same_as_user=_bool(data, "system_same_as_user", False, source),
            wrap=_bool(data, "wrap", True, source),
            macro=_bool(data, "macro", True, source),
            names_behavior=names or "force",  # type: ignore[arg-type]
            skip_examples=_bool(data, "skip_examples", False, source),
            bind_to_context=_bool(data, "bind_to_context", False, source),
            sequences_as_stop_strings=_bool(data, "sequences_as_stop_strings", True, source),
            **values,
        )


@dataclass(frozen=True, slots=True)
class ContextTemplate:
    """SillyTavern's context template (``power_user.context``) with the formatting switches
    saved alongside it. ``story_string`` is parsed once, at construction."""

    name: str = ""
    story_string: str = DEFAULT_STORY_STRING
    example_separator: str = "***"
    chat_start: str = "***"
    use_stop_strings: bool = False
    names_as_stop_strings: bool = True
    allow_jailbreak: bool = False
    always_force_name2: bool = True
    trim_sentences: bool = False
    single_line: bool = False
    story_string_position: int = 0  # [newer] 0 = top of the prompt, 1 = in the chat at depth
    story_string_depth: int = 1
    story_string_role: int = 0
    template: Template = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "template", compile_template(self.story_string))

    @classmethod
    def from_st(cls, data: Mapping[str, Any], source: str = "context") -> ContextTemplate:
        """From a context preset (or ``power_user.context`` of settings.json)."""
        return cls(
            name=_str(data, "name", "", source) or _str(data, "preset", "", source),
            story_string=_str(data, "story_string", DEFAULT_STORY_STRING, source),
            example_separator=_str(data, "example_separator", "***", source),
            chat_start=_str(data, "chat_start", "***", source),
            use_stop_strings=_bool(data, "use_stop_strings", False, source),
            names_as_stop_strings=_bool(data, "names_as_stop_strings", True, source),
            allow_jailbreak=_bool(data, "allow_jailbreak", False, source),
            always_force_name2=_bool(data, "always_force_name2", True, source),
            trim_sentences=_bool(data, "trim_sentences", False, source),
            single_line=_bool(data, "single_line", False, source),
            story_string_position=_int(data, "story_string_position", 0, source),
            story_string_depth=_int(data, "story_string_depth", 1, source),
            story_string_role=_int(data, "story_string_role", 0, source),
        )


@dataclass(frozen=True, slots=True)
class SystemPrompt:
    """SillyTavern's system prompt preset (``power_user.sysprompt``)."""

    name: str = ""
    content: str = ""
    post_history: str = ""  # [newer] the text-completion post-history instructions
    enabled: bool = True

    @classmethod
    def from_st(cls, data: Mapping[str, Any], source: str = "sysprompt") -> SystemPrompt:
        return cls(
            name=_str(data, "name", "", source),
            content=_str(data, "content", "", source),
            post_history=_str(data, "post_history", "", source),
            enabled=_bool(data, "enabled", True, source),
        )


CHATML = InstructTemplate(
    name="ChatML",
    input_sequence="<|im_start|>user",
    output_sequence="<|im_start|>assistant",
    system_sequence="<|im_start|>system",
    input_suffix="<|im_end|>\n",
    output_suffix="<|im_end|>\n",
    system_suffix="<|im_end|>\n",
    stop_sequence="<|im_end|>",
    names_behavior="always",
)
CHATML_CONTEXT = ContextTemplate(
    name="ChatML",
    story_string="<|im_start|>system\n" + DEFAULT_STORY_STRING + "{{trim}}<|im_end|>",
    example_separator="",
    chat_start="",
)
NEUTRAL_SYSTEM_PROMPT = SystemPrompt(
    name="Neutral - Chat",
    content="Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}.",
)


@dataclass(frozen=True, slots=True)
class FormattingPresets:
    """What one preset file (or one combined object) held; absent parts are None."""

    instruct: InstructTemplate | None = None
    context: ContextTemplate | None = None
    sysprompt: SystemPrompt | None = None
    instruct_enabled: bool | None = None  # only a settings object says whether it is on


def formatting_from_st(data: Mapping[str, Any], source: str) -> FormattingPresets:
    """Read whatever formatting presets ``data`` holds, told apart by their fields."""
    if not isinstance(data, Mapping):
        raise PresetError(f"{source}: expected a JSON object")
    combined = [
        k for k in ("instruct", "context", "sysprompt") if isinstance(data.get(k), Mapping)
    ]
    if combined:  # a master export or power_user: one object per kind
        instruct, sysprompt, enabled = _instruct_part(data.get("instruct"), f"{source}: instruct")
        context = None
        if "context" in combined:
            context = ContextTemplate.from_st(data["context"], f"{source}: context")
        if "sysprompt" in combined:
            sysprompt = SystemPrompt.from_st(data["sysprompt"], f"{source}: sysprompt")
        return FormattingPresets(instruct, context, sysprompt, enabled)
    instruct, sysprompt, enabled = None, None, None
    if "input_sequence" in data or "output_sequence" in data:
        instruct, sysprompt, enabled = _instruct_part(data, source)
    context = None
    if "story_string" in data or "chat_start" in data or "example_separator" in data:
        context = ContextTemplate.from_st(data, source)
    if instruct is None and context is None and "content" in data:
        sysprompt = SystemPrompt.from_st(data, source)
    if instruct is None and context is None and sysprompt is None:
        raise PresetError(
            f"{source}: not an instruct, context or system prompt preset "
            "(no input_sequence, story_string or content field)"
        )
    return FormattingPresets(instruct, context, sysprompt, enabled)


def _instruct_part(
    data: Any, source: str
) -> tuple[InstructTemplate | None, SystemPrompt | None, bool | None]:
    if not isinstance(data, Mapping):
        return None, None, None
    instruct = InstructTemplate.from_st(data, source)
    enabled = _bool(data, "enabled", False, source) if "enabled" in data else None
    sysprompt = None
    if "system_prompt" in data:  # pre-1.12.6 instruct presets carried the system prompt
        sysprompt = SystemPrompt(
            name=f"[Migrated] {instruct.name}",
            content=_str(data, "system_prompt", "", source),
            enabled=True if enabled is None else enabled,
        )
    return instruct, sysprompt, enabled


def read_json(path: Path) -> Any:
    """Read a (bounded) JSON file; :class:`PresetError` names the file on failure."""
    try:
        size = path.stat().st_size
        if size > MAX_PRESET_BYTES:
            raise PresetError(f"{path}: {size} bytes is over {MAX_PRESET_BYTES}")
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise PresetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PresetError(f"{path}: not valid JSON: {exc}") from None


def load_formatting(path: Path) -> FormattingPresets:
    """Load an instruct, context or system-prompt preset file (any of its shapes)."""
    return formatting_from_st(read_json(path), str(path))


def select_instruct(
    templates: Sequence[InstructTemplate], model_id: str
) -> InstructTemplate | None:
    """SillyTavern's auto-selection: the first template, by name, whose ``activation_regex``
    matches the model id (``/pattern/flags`` or a bare pattern). Invalid patterns are
    skipped, as SillyTavern does; a model id is short, so a match cannot take long."""
    for template in sorted(templates, key=lambda t: t.name):
        pattern = template.activation_regex
        if not pattern:
            continue
        flags = 0
        if len(pattern) > 2 and pattern.startswith("/") and pattern.rfind("/") > 0:
            end = pattern.rfind("/")
            for flag in pattern[end + 1 :]:
                flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}.get(flag, 0)
            pattern = pattern[1:end]
        try:
            if re.search(pattern, model_id[:512], flags):
                return template
        except re.error:
            continue
    return None


def with_fields(template: InstructTemplate, **changes: Any) -> InstructTemplate:
    """A copy with ``changes``; unknown names are an error (a typo in config)."""
    known = {f.name for f in fields(InstructTemplate)}
    unknown = set(changes) - known
    if unknown:
        raise PresetError(f"instruct: unknown field(s) {sorted(unknown)}")
    return replace(template, **changes)
