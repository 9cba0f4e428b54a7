"""The files prompts are built from (presets, lorebooks, regex scripts), loaded once, and
the per-turn assembly of :class:`PromptInputs` from them and the channel's state.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.backends.capabilities import Capabilities, capabilities
from bot.config import AppConfig, BackendConfig, ReasoningConfig
from bot.errors import ConfigError
from bot.prompt.card import Character
from bot.prompt.chat_preset import load_chat_preset
from bot.prompt.group_prompt import GroupLike, group_prompt_parts
from bot.prompt.lore import (
    Lorebook,
    LoreBooks,
    LoreResult,
    LoreSettings,
    LoreState,
    from_character_book,
    load_world,
)
from bot.prompt.model import AuthorsNote, GenerationType, PromptInputs, RoleRules
from bot.prompt.persona import Persona
from bot.prompt.presets import load_formatting
from bot.prompt.regex_scripts import RegexScript, RegexScriptError, load_scripts, scripts_from_card
from bot.prompt.st_settings import StSettings
from bot.types import ChatMessage

_log = logging.getLogger(__name__)


def role_rules(caps: Capabilities) -> RoleRules:
    return RoleRules(
        system=caps.system_role,
        system_first_only=caps.system_first_only,
        alternate=caps.alternate,
        user_first=caps.user_first,
        names=caps.names,
        prefill=caps.prefill,
    )


@dataclass
class PromptSetup:
    settings: StSettings | None = None  # a SillyTavern settings.json, when configured
    system_prompt: str = ""  # the config's system prompt (when no ST settings are used)
    worlds: tuple[Lorebook, ...] = ()
    character_worlds: Mapping[str, tuple[Lorebook, ...]] = field(default_factory=dict)
    lore: LoreSettings = field(default_factory=LoreSettings)
    regex: tuple[RegexScript, ...] = ()
    note: AuthorsNote | None = None
    overrides: Mapping[str, object] = field(default_factory=dict)
    reasoning: ReasoningConfig = field(default_factory=ReasoningConfig)
    _card_books: dict[str, tuple[Lorebook, ...]] = field(default_factory=dict)
    _card_scripts: dict[str, tuple[Character, tuple[RegexScript, ...]]] = field(
        default_factory=dict
    )

    @classmethod
    def load(cls, config: AppConfig) -> PromptSetup:
        """Read every configured prompt file; a bad one is a ConfigError naming it."""
        prompt = config.prompt
        st = StSettings.load(prompt.sillytavern_settings) if prompt.sillytavern_settings else None
        overrides: dict[str, object] = {}
        for name in ("instruct", "context", "sysprompt"):
            path = getattr(prompt, name)
            if path is not None:
                presets = load_formatting(path)
                part = getattr(presets, name)
                if part is None:
                    raise ConfigError(f"{path}: not a SillyTavern {name} preset")
                overrides[name] = part
        if prompt.chat_preset is not None:
            overrides["chat"] = load_chat_preset(prompt.chat_preset)
        lore = st.lore if st is not None else LoreSettings()
        if prompt.lore:
            lore = LoreSettings.from_st({**_lore_dict(lore), **prompt.lore}, "config: prompt.lore")
        note = None
        if prompt.authors_note is not None and prompt.authors_note.text:
            n = prompt.authors_note
            note = AuthorsNote(n.text, n.position, n.depth, n.role, n.interval)
        return cls(
            settings=st,
            system_prompt=config.defaults.system_prompt,
            worlds=tuple(_world(p) for p in prompt.worlds),
            character_worlds={
                name: tuple(_world(p) for p in c.worlds) for name, c in config.characters.items()
            },
            lore=lore,
            regex=tuple(s for p in prompt.regex_scripts for s in _scripts(p)),
            note=note,
            overrides=overrides,
            reasoning=prompt.reasoning,
        )

    def scripts(self, key: str, character: Character) -> tuple[RegexScript, ...]:
        """The configured regex scripts, then the card's own (read once per card version).

        A card's broken scripts are logged and skipped: the card still talks."""
        cached = self._card_scripts.get(key)
        if cached is not None and cached[0] is character:
            return cached[1]
        try:
            own = tuple(scripts_from_card(character))
        except RegexScriptError as exc:
            _log.warning("ignoring the regex scripts of card %s: %s", key, exc.message)
            own = ()
        found = (*self.regex, *own)
        self._card_scripts[key] = (character, found)
        return found

    def books(self, key: str, character: Character) -> LoreBooks:
        card = self._card_books.get(key)
        if card is None:
            book = character.character_book
            card = (from_character_book(book, f"{key} card"),) if book else ()
            self._card_books[key] = card
        return LoreBooks(
            character=(*card, *self.character_worlds.get(key, ())), global_=self.worlds
        )

    def inputs(
        self,
        *,
        character: Character,
        user_name: str,
        persona: Persona | None,
        history: Sequence[ChatMessage],
        backend: BackendConfig,
        generation: GenerationType,
        note: AuthorsNote | None,
        variables: MutableMapping[str, str],
        chat_id: str,
    ) -> PromptInputs:
        """The inputs of one prompt: the backend decides mode and sizes; the presets the rest."""
        caps = capabilities(backend.provider, backend.model, backend.capabilities)
        if self.settings is not None:
            base = self.settings.prompt_inputs(character, history, generation=generation)
        else:
            base = PromptInputs(
                character=character,
                user_name=user_name,
                history=history,
                system_prompt=self.system_prompt,
                generation=generation,
            )
        base = replace(base, **self.overrides)  # type: ignore[arg-type]
        persona_fields: dict[str, object] = {}
        if persona is not None:
            persona_fields = {
                "user_name": persona.name,
                "persona_description": persona.description,
                "persona_position": int(persona.position),
                "persona_depth": persona.depth,
                "persona_role": persona.role,
            }
        elif self.settings is not None:
            persona_fields = {"user_name": user_name}
        return replace(
            base,
            mode=backend.mode,
            context_size=backend.context_size,
            max_tokens=backend.max_tokens,
            model=backend.model,
            role_rules=role_rules(caps),
            authors_note=note or self.note or base.authors_note,
            local_vars=variables,
            chat_id=chat_id,
            rng=random.Random(),
            **persona_fields,  # type: ignore[arg-type]
        )


def member_inputs(
    inputs: PromptInputs, group: GroupLike, speaker: str, cards: Mapping[str, Character]
) -> PromptInputs:
    """The inputs of a group member's reply: swap or join cards, every member's note, the
    group nudge, the muted members and the other speakers' stop strings."""
    wrap = inputs.instruct.wrap if inputs.instruct is not None else True
    parts = group_prompt_parts(
        group,
        speaker,
        cards,
        generation=inputs.kind,
        wrap=wrap,
        nudge=inputs.chat.group_nudge_prompt,
    )
    return replace(
        inputs,
        character=parts.card,
        group=parts.members,
        group_muted=parts.muted,
        injections=(*parts.injections, *inputs.injections),
        chat=replace(inputs.chat, group_nudge_prompt=parts.nudge),
        custom_stop=(*inputs.custom_stop, *parts.stop),
    )


def authors_note(raw: str | None) -> AuthorsNote | None:
    """The channel's author's note (set with a command), stored as JSON."""
    if not raw:
        return None
    try:
        d = json.loads(raw)
        return AuthorsNote(
            str(d["text"]),
            int(d.get("position", 1)),
            int(d.get("depth", 4)),
            d.get("role", "system"),
            int(d.get("interval", 1)),
        )
    except (ValueError, KeyError, TypeError):
        return None


def lore_state(raw: str | None) -> LoreState:
    return LoreState.from_json(raw) if raw else LoreState()


def lore_changed(before: LoreState, result: LoreResult | None) -> str | None:
    if result is None:
        return None
    after = result.state.to_json()
    return after if after != before.to_json() else None


def _world(path: Path) -> Lorebook:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"lorebook {path}: cannot read it ({exc.strerror})") from None
    return load_world(data, str(path), name=path.stem)


def _scripts(path: Path) -> list[RegexScript]:
    try:
        return load_scripts(path.read_bytes(), str(path))
    except OSError as exc:
        raise ConfigError(f"regex scripts {path}: cannot read them ({exc.strerror})") from None


def _lore_dict(settings: LoreSettings) -> dict[str, object]:
    # the ST names of the settings we let the config override
    return {
        "world_info_depth": settings.depth,
        "world_info_budget": settings.budget,
        "world_info_budget_cap": settings.budget_cap,
        "world_info_min_activations": settings.min_activations,
        "world_info_recursive": settings.recursive,
        "world_info_case_sensitive": settings.case_sensitive,
        "world_info_match_whole_words": settings.match_whole_words,
        "world_info_include_names": settings.include_names,
    }


def loads_vars(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
