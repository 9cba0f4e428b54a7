"""Making one reply: build the prompt for a backend, stream it, fall back down the chain.

The fallback chain (channel setting ``fallback``, else ``defaults.fallback``) is tried in
order while a backend fails *before any text arrived*: down, rate-limited, out of quota,
bad key. Each attempt gets a prompt built for that backend (its mode, context and model),
and the reply says which backend answered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from bot.backends.base import GenerationRequest
from bot.backends.pool import BackendPool
from bot.config import Defaults
from bot.delivery.pacer import Pacer
from bot.delivery.ports import SurfaceFactory
from bot.delivery.stream import Delivery
from bot.engine.characters import CharacterLibrary
from bot.engine.generate import Generation, OnText, Outcome
from bot.engine.prompting import PromptSetup, loads_vars, lore_changed, lore_state
from bot.errors import BotError
from bot.prompt.builder import BuiltPrompt, activate_lore, build_prompt
from bot.prompt.lore import LoreResult
from bot.prompt.model import AuthorsNote, GenerationType
from bot.prompt.persona import Persona, resolve_persona
from bot.prompt.tokens import TokenCounter
from bot.state import store as ops
from bot.state.store import ChatStore, Op, QueuedAction, TurnState
from bot.types import ChatKey, ChatMessage

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Built:
    prompt: BuiltPrompt
    lore: LoreResult | None
    writes: tuple[Op, ...]  # lore timers and variables this prompt changed


@dataclass(frozen=True, slots=True)
class Attempt:
    backend: str
    model: str
    built: BuiltPrompt
    outcome: Outcome
    writes: tuple[Op, ...] = ()  # lore timers and variables changed by this prompt


class Replier:
    def __init__(
        self,
        store: ChatStore,
        backends: BackendPool,
        characters: CharacterLibrary,
        surfaces: Mapping[str, SurfaceFactory],
        pacer: Pacer,
        defaults: Defaults,
        counter: TokenCounter,
        running: dict[ChatKey, Generation],
        setup: PromptSetup,
    ) -> None:
        self._store = store
        self._backends = backends
        self._characters = characters
        self._surfaces = surfaces
        self._pacer = pacer
        self._defaults = defaults
        self._counter = counter
        self._running = running  # shared with the engine, so a stop reaches the stream
        self._setup = setup

    def chain(self, settings: Mapping[str, str]) -> list[str]:
        primary = settings.get("backend", "") or self._backends.default
        configured = settings.get("fallback")
        rest = (
            [n.strip() for n in configured.split(",")]
            if configured is not None
            else list(self._defaults.fallback)
        )
        return list(dict.fromkeys([primary, *(n for n in rest if n)]))

    async def generate(
        self,
        state: TurnState,
        history: list[ChatMessage],
        user_name: str,
        *,
        continue_from: ChatMessage | None = None,
        kind: GenerationType = "normal",
    ) -> ChatMessage | None:
        """Stream one reply to the channel; None when nothing usable arrived."""
        key = state.key
        if continue_from is not None:
            kind = "continue"
        persona = await self._persona(state)
        character = self._characters.get(state.settings.get("character", ""))
        prefix = continue_from.text if continue_from is not None else ""
        failed: list[str] = []
        surface = self._surfaces[key.platform](key)
        async with Delivery(surface, self._pacer, key.tag()) as sink:
            chain = self.chain(state.settings)
            for position, name in enumerate(chain):
                try:
                    attempt = await self._attempt(
                        state, name, history, user_name, prefix, sink.update, kind, persona
                    )
                except BotError as exc:  # e.g. a fallback's missing key: try the next one
                    if position == len(chain) - 1:
                        raise
                    failed.append(f"{name}: {exc.user_message()}")
                    continue
                outcome = attempt.outcome
                if outcome.lost is not None:
                    raise outcome.lost
                text = outcome.text.strip()
                usable = bool(text) and text != prefix.strip()
                last = position == len(chain) - 1
                if not usable and outcome.error is not None and not outcome.stopped and not last:
                    _log.info("backend %s failed before any text; falling back", name)
                    failed.append(f"{name}: {outcome.error.message}")
                    continue
                if not usable:
                    await sink.finish(_failure_line(outcome))
                    return None
                note = _marker(outcome) + _fallback_note(name, failed)
                ids = await sink.finish(text + note)
                return self._reply(state, character.name, attempt, text, failed, ids)
        return None

    def build(
        self,
        state: TurnState,
        name: str,
        history: list[ChatMessage],
        user_name: str,
        kind: GenerationType,
        persona: Persona | None,
    ) -> Built:
        """Build the prompt for backend ``name`` (pure apart from the loaded files)."""
        key = state.key
        _, config = self._backends.get(name)
        char_key = state.settings.get("character", "") or self._characters.default
        character = self._characters.get(char_key)
        vars_field, lore_field = f"vars:{state.chat_id}", f"lore:{state.chat_id}"
        variables = loads_vars(state.settings.get(vars_field))
        vars_before = dict(variables)
        inputs = self._setup.inputs(
            character=character,
            user_name=user_name,
            persona=persona,
            history=history,
            backend=config,
            generation=kind,
            note=_note(state.settings.get("authors_note")),
            variables=variables,
            chat_id=f"{key.tag()}:{state.chat_id}",
        )
        books = self._setup.books(char_key, character)
        lore_before = lore_state(state.settings.get(lore_field))
        lore = None
        if books.character or books.global_:
            # the scan expands the card too: on a copy, so {{incvar}} counts once per prompt
            scan_inputs = replace(inputs, local_vars=dict(variables))
            lore = activate_lore(
                scan_inputs, books, self._setup.lore, self._counter, state=lore_before
            )
            inputs = replace(inputs, lore=lore)
        built = build_prompt(inputs, self._counter)
        writes: list[Op] = []
        if (changed := lore_changed(lore_before, lore)) is not None:
            writes.append(ops.set_setting(lore_field, changed))
        if variables != vars_before:
            writes.append(ops.set_setting(vars_field, json.dumps(variables, ensure_ascii=False)))
        return Built(built, lore, tuple(writes))

    async def preview(self, state: TurnState, user_name: str) -> str:
        """What the next prompt would hold and what was cut (the `prompt` command)."""
        name = self.chain(state.settings)[0]
        made = self.build(
            state, name, state.history, user_name, "normal", await self._persona(state)
        )
        lines = [f"backend {name}", made.prompt.report.describe()]
        if made.lore is not None:
            lines.append(
                "world info: "
                + (", ".join(f"{b}#{u}" for b, u in made.lore.activated) or "nothing activated")
            )
        return "\n".join(lines)

    async def _attempt(
        self,
        state: TurnState,
        name: str,
        history: list[ChatMessage],
        user_name: str,
        prefix: str,
        on_text: OnText,
        kind: GenerationType,
        persona: Persona | None,
    ) -> Attempt:
        key = state.key
        backend, config = self._backends.get(name)
        made = self.build(state, name, history, user_name, kind, persona)
        built = made.prompt
        request = GenerationRequest(
            mode=config.mode,
            model=config.model,
            max_tokens=config.max_tokens,
            messages=built.messages,
            prompt=built.text,
            stop=built.stop,
            sampler=config.sampler.as_dict(),
        )
        generation = Generation(
            backend,
            request,
            on_text,
            renew=lambda: self._store.renew(key, state.token),
            renew_every=self._store.lock_ttl / 3,
            prefix=prefix,
            stops=built.stop,
        )
        self._running[key] = generation
        try:
            outcome = await generation.run()
        finally:
            self._running.pop(key, None)
        return Attempt(name, config.model, built, outcome, made.writes)

    async def _persona(self, state: TurnState) -> Persona | None:
        user_id = _author_id(state)
        stored = await self._store.personas(state.key, user_id) if user_id else {}
        parsed = {}
        for field_name, raw in stored.items():
            try:
                parsed[field_name] = Persona.from_dict(json.loads(raw), "stored persona")
            except (ValueError, BotError):
                _log.warning("ignoring a broken stored persona of %s", user_id)
        return resolve_persona(user_id, state.key.server, parsed)

    def _reply(
        self,
        state: TurnState,
        speaker: str,
        attempt: Attempt,
        text: str,
        failed: list[str],
        ids: list[str],
    ) -> ChatMessage:
        outcome = attempt.outcome
        state.pending.extend(attempt.writes)
        usage = outcome.usage
        prompt_tokens = (usage.prompt_tokens if usage else None) or attempt.built.prompt_tokens
        completion = (usage.completion_tokens if usage else None) or self._counter.count(text)
        state.pending.append(
            ops.usage(attempt.backend, attempt.model, _author_id(state), prompt_tokens, completion)
        )
        meta = _meta(attempt, prompt_tokens)
        if failed:
            meta["fallback_from"] = failed
        return ChatMessage(
            0,
            "assistant",
            speaker,
            text,
            swipes=[text],
            swipe_meta=[meta],
            created=time.time(),
            platform_ids=ids,
        )


def _note(raw: str | None) -> AuthorsNote | None:
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


def _author_id(state: TurnState) -> str:
    item = state.item
    return item.author.user_id if isinstance(item, QueuedAction) else item.user_id


def _marker(outcome: Outcome) -> str:
    if outcome.stopped:
        return " [stopped]"
    if outcome.error is not None:
        return f"\n\n⚠ cut off: {outcome.error.user_message()}"
    if outcome.finish == "filtered":
        return "\n\n⚠ the backend's content filter stopped this reply; regenerate or rephrase"
    return ""


def _fallback_note(name: str, failed: list[str]) -> str:
    if not failed:
        return ""
    first = failed[0].split(":", 1)[0]
    return f"\n\n↪ answered by {name} ({first} was unavailable)"


def _failure_line(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"⚠ {outcome.error.user_message()}"
    if outcome.stopped:
        return "[stopped before the reply began]"
    return "⚠ The backend returned an empty reply; try regenerating."


def _meta(attempt: Attempt, prompt_tokens: int) -> dict[str, object]:
    outcome = attempt.outcome
    meta: dict[str, object] = {
        "backend": attempt.backend,
        "model": attempt.model,
        "finish": outcome.finish or ("stopped" if outcome.stopped else "error"),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": outcome.usage.completion_tokens if outcome.usage else None,
        **outcome.timing(),
    }
    if outcome.reasoning:
        meta["reasoning"] = outcome.reasoning
    if outcome.partial:
        meta["partial"] = True
    if outcome.error is not None:
        meta["error"] = outcome.error.user_message()
    return meta
