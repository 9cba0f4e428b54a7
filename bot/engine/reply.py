"""Making one reply: build the prompt for a backend, stream it, fall back down the chain.

The fallback chain (channel setting ``fallback``, else ``defaults.fallback``) is tried in
order while a backend fails *before any text arrived*: down, rate-limited, out of quota,
bad key. Each attempt gets a prompt built for that backend (its mode, context and model),
and the reply says which backend answered.

The raw text is cleaned (:mod:`bot.engine.output`: stop strings, other speakers' lines,
regex scripts) before it is stored; its reasoning is kept in the swipe's meta, never in the
text, so it never goes back into a prompt.
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
from bot.engine.cast import Cast
from bot.engine.generate import Generation, Outcome
from bot.engine.measure import Measures
from bot.engine.output import (
    Output,
    Scripts,
    failure_line,
    fallback_note,
    marker,
    same,
    script_macros,
)
from bot.engine.prompting import (
    PromptSetup,
    authors_note,
    loads_vars,
    lore_changed,
    lore_state,
    member_inputs,
)
from bot.errors import BotError
from bot.prompt.builder import BuiltPrompt, activate_lore, build_prompt
from bot.prompt.cleanup import CleanupOptions
from bot.prompt.jinja import ChatTemplate
from bot.prompt.lore import LoreResult
from bot.prompt.model import GenerationType, PromptInputs
from bot.prompt.persona import Persona, resolve_persona
from bot.prompt.prepared import names_of
from bot.prompt.regex_scripts import RegexScript
from bot.prompt.tokenizers import Tokenizers
from bot.prompt.tokens import TokenCounter
from bot.state import store as ops
from bot.state.store import ChatStore, Op, QueuedAction, TurnState
from bot.types import ChatKey, ChatMessage

_log = logging.getLogger(__name__)
_NO_SCRIPTS = Scripts()


@dataclass(frozen=True, slots=True)
class Built:
    prompt: BuiltPrompt
    lore: LoreResult | None
    writes: tuple[Op, ...]  # lore timers and variables this prompt changed
    inputs: PromptInputs


@dataclass(frozen=True, slots=True)
class Attempt:
    backend: str
    model: str
    built: BuiltPrompt
    outcome: Outcome
    output: Output
    writes: tuple[Op, ...] = ()  # lore timers and variables changed by this prompt


@dataclass(frozen=True, slots=True)
class Made:
    """One generation's result: the reply to store (None when nothing usable arrived) and
    whether a user stopped it (a stop ends a group's whole batch)."""

    message: ChatMessage | None
    stopped: bool = False


class Replier:
    def __init__(
        self,
        store: ChatStore,
        backends: BackendPool,
        surfaces: Mapping[str, SurfaceFactory],
        pacer: Pacer,
        defaults: Defaults,
        counter: TokenCounter,
        running: dict[ChatKey, Generation],
        setup: PromptSetup,
        tokenizers: Tokenizers | None = None,
    ) -> None:
        self._store = store
        self._backends = backends
        self._surfaces = surfaces
        self._pacer = pacer
        self._defaults = defaults
        self._counter = counter
        self._running = running  # shared with the engine, so a stop reaches the stream
        self._setup = setup
        self._scripts: dict[tuple[RegexScript, ...], Scripts] = {}
        self.measures = Measures(backends, counter, tokenizers)

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
        cast: Cast,
        *,
        continue_from: ChatMessage | None = None,
        kind: GenerationType = "normal",
        label: str = "",
    ) -> Made:
        """Stream one reply by ``cast`` to the channel as its own message, ``label`` first."""
        key = state.key
        if continue_from is not None:
            kind = "continue"
        persona = await self._persona(state)
        prefix = continue_from.text if continue_from is not None else ""
        failed: list[str] = []
        surface = self._surfaces[key.platform](key)
        async with Delivery(surface, self._pacer, key.tag()) as sink:
            chain = self.chain(state.settings)
            for position, name in enumerate(chain):
                try:
                    await self.measures.calibrate(
                        name, [cast.card.description, *(m.text for m in history)]
                    )
                    template = await self.measures.model_template(name)
                    made = self.build(
                        state, name, history, user_name, kind, persona, cast, template
                    )
                    attempt = await self._attempt(state, name, made, prefix, sink, cast, label)
                except BotError as exc:  # e.g. a fallback's missing key: try the next one
                    if position == len(chain) - 1:
                        raise
                    failed.append(f"{name}: {exc.user_message()}")
                    continue
                outcome, output = attempt.outcome, attempt.output
                if outcome.lost is not None:
                    raise outcome.lost
                text = output.stored(outcome.text) if outcome.text.strip() else ""
                usable = bool(text) and text != prefix.strip()
                last = position == len(chain) - 1
                if not usable and outcome.error is not None and not outcome.stopped and not last:
                    _log.info("backend %s failed before any text; falling back", name)
                    failed.append(f"{name}: {outcome.error.message}")
                    continue
                if not usable:
                    await sink.finish(output.status(failure_line(outcome)))
                    return Made(None, outcome.stopped)
                reasoning = output.keep_reasoning(outcome.reasoning)
                note = marker(outcome) + fallback_note(name, failed)
                ids = await sink.finish(output.shown(text, reasoning, note))
                reply = self._reply(state, cast.name, attempt, text, reasoning, failed, ids)
                return Made(reply, outcome.stopped)
        return Made(None)

    def build(
        self,
        state: TurnState,
        name: str,
        history: list[ChatMessage],
        user_name: str,
        kind: GenerationType,
        persona: Persona | None,
        cast: Cast,
        template: ChatTemplate | None = None,
    ) -> Built:
        """Build the prompt for backend ``name`` (pure apart from the loaded files)."""
        key = state.key
        _, config = self._backends.get(name)
        counter = self.measures.counter(name)
        character = cast.card
        vars_field, lore_field = f"vars:{state.chat_id}", f"lore:{state.chat_id}"
        variables = loads_vars(state.settings.get(vars_field))
        vars_before = dict(variables)
        if persona is not None:  # the user's past lines speak under their persona's name
            history = _as_persona(history, _author_id(state), persona.name)
        scripts = self.scripts(cast)
        if scripts.prompt:  # prompt-only scripts change what is sent, not what is stored
            history = scripts.for_prompt(history, script_macros(user_name, character.name))
        inputs = self._setup.inputs(
            character=character,
            user_name=user_name,
            persona=persona,
            history=history,
            backend=config,
            generation=kind,
            note=authors_note(state.settings.get("authors_note")),
            variables=variables,
            chat_id=f"{key.tag()}:{state.chat_id}",
        )
        if cast.group is not None:
            inputs = member_inputs(inputs, cast.group, cast.name, cast.cards)
        if template is not None:
            inputs = replace(inputs, renderer=template)
        books = self._setup.books(cast.key, character)
        lore_before = lore_state(state.settings.get(lore_field))
        lore = None
        if books.character or books.global_:
            # the scan expands the card too: on a copy, so {{incvar}} counts once per prompt
            scan_inputs = replace(inputs, local_vars=dict(variables))
            lore = activate_lore(scan_inputs, books, self._setup.lore, counter, state=lore_before)
            inputs = replace(inputs, lore=lore)
        built = build_prompt(inputs, counter)
        writes: list[Op] = []
        if (changed := lore_changed(lore_before, lore)) is not None:
            writes.append(ops.set_setting(lore_field, changed))
        if variables != vars_before:
            writes.append(ops.set_setting(vars_field, json.dumps(variables, ensure_ascii=False)))
        return Built(built, lore, tuple(writes), inputs)

    def scripts(self, cast: Cast, *, everyone: bool = False) -> Scripts:
        """The regex scripts for ``cast``'s speaker; ``everyone``: every group member's
        (a user's message in a group is addressed to all of them)."""
        if not everyone or cast.group is None:
            found = self._setup.scripts(cast.key, cast.card)
        else:
            by_id = {
                id(s): s
                for name, card in cast.cards.items()
                for s in self._setup.scripts(cast.keys[name], card)
            }
            found = tuple(by_id.values())
        if not found:
            return _NO_SCRIPTS
        cached = self._scripts.get(found)
        if cached is None:
            if len(self._scripts) > 64:  # cards change rarely; never let this grow unbounded
                self._scripts.clear()
            cached = self._scripts[found] = Scripts.of(found)
        return cached

    async def preview(self, state: TurnState, user_name: str, cast: Cast) -> str:
        """What the next prompt would hold and what was cut (the `prompt` command)."""
        name = self.chain(state.settings)[0]
        persona = await self._persona(state)
        made = self.build(state, name, state.history, user_name, "normal", persona, cast)
        head = f"backend {name}" + (f", speaker {cast.name}" if cast.group else "")
        lines = [head, made.prompt.report.describe()]
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
        made: Built,
        prefix: str,
        sink: Delivery,
        cast: Cast,
        label: str,
    ) -> Attempt:
        key = state.key
        backend, config = self._backends.get(name)
        built = made.prompt
        output = self._output(made, cast, label)

        async def on_text(text: str) -> None:
            await sink.update(output.frame(text))

        async def on_status(text: str) -> None:
            await sink.update(output.status(text))

        request = GenerationRequest(
            mode=config.mode,
            model=config.model,
            max_tokens=config.max_tokens,
            messages=built.messages,
            prompt=built.text,
            stop=built.stop,
            sampler=config.sampler.as_dict(),
        )
        reasoning = self._setup.reasoning
        # another speaker's "Name:" line ends the reply: stop streaming there too
        names = tuple(f"\n{n}:" for n in output.cleanup.other_names)
        generation = Generation(
            backend,
            request,
            on_text,
            renew=lambda: self._store.renew(key, state.token),
            renew_every=self._store.lock_ttl / 3,
            prefix=prefix,
            stops=tuple(dict.fromkeys((*built.stop, *names))),
            reasoning=(reasoning.prefix, reasoning.suffix),
            on_status=on_status,
        )
        self._running[key] = generation
        try:
            outcome = await generation.run()
        finally:
            self._running.pop(key, None)
        return Attempt(name, config.model, built, outcome, output, made.writes)

    def _output(self, made: Built, cast: Cast, label: str) -> Output:
        inputs = made.inputs
        user = inputs.user_name
        speaker = user if inputs.kind == "impersonate" else cast.name
        group = cast.group.speakers if cast.group is not None else ()
        # other users who spoke lately (a scan of the whole window would cost every turn)
        names = (user, *names_of(inputs.history[-40:], user)[:8], cast.name, *group)
        context = inputs.context
        cleanup = CleanupOptions(
            stop_strings=made.prompt.stop,
            speaker=speaker,
            other_names=tuple(n for n in dict.fromkeys(names) if n and n != speaker),
            single_line=context.single_line,
            trim_sentences=context.trim_sentences,
        )
        scripts = self.scripts(cast)
        macros = script_macros(user, cast.name) if scripts else same
        return Output(cleanup, scripts, macros, self._setup.reasoning, label)

    async def _persona(self, state: TurnState) -> Persona | None:
        user_id = _author_id(state)
        stored = state.personas
        if stored is None:  # an item that waited in the queue: read its author's now
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
        reasoning: str,
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
        meta = _meta(attempt, prompt_tokens, reasoning)
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


def _as_persona(history: list[ChatMessage], user_id: str, name: str) -> list[ChatMessage]:
    out = []
    for m in history:
        if m.role == "user" and m.user_id == user_id and m.name != name:
            m = m.copy()  # stored entries are shared: never change them in place
            m.name = name
        out.append(m)
    return out


def _author_id(state: TurnState) -> str:
    item = state.item
    return item.author.user_id if isinstance(item, QueuedAction) else item.user_id


def _meta(attempt: Attempt, prompt_tokens: int, reasoning: str) -> dict[str, object]:
    outcome = attempt.outcome
    meta: dict[str, object] = {
        "backend": attempt.backend,
        "model": attempt.model,
        "finish": outcome.finish or ("stopped" if outcome.stopped else "error"),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": outcome.usage.completion_tokens if outcome.usage else None,
        **outcome.timing(),
    }
    if reasoning:
        meta["reasoning"] = reasoning
    if outcome.partial:
        meta["partial"] = True
    if outcome.error is not None:
        meta["error"] = outcome.error.user_message()
    return meta
