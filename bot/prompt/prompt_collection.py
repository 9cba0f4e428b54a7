"""The prompt manager's prompt collection: the preset's enabled prompts in order, merged with
the prompts SillyTavern builds for each generation (lore, card fields, persona, impersonation,
relative extension prompts), with the card's overrides applied — ``getPromptCollection`` and
``preparePromptsForChatCompletion``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.prompt.chat_preset import ChatPreset, PromptDef
from bot.prompt.injection import Position
from bot.prompt.prepared import Prepared
from bot.types import Role


@dataclass(slots=True)
class Prompt:
    identifier: str
    role: Role
    content: str
    system_prompt: bool = True
    position: int = 0  # InjectionPosition
    depth: int = 4
    order: int = 100
    anchor: str = ""  # extension prompts: "start"/"end" of the main prompt's slot


def collection(p: Prepared, preset: ChatPreset) -> list[Prompt]:
    """``getPromptCollection`` merged with the system prompts, as
    ``preparePromptsForChatCompletion`` does (card overrides applied)."""
    inputs = p.inputs
    prompts: list[Prompt] = []
    for ident, enabled in preset.order:
        d = preset.by_id.get(ident)
        if d is None or not (enabled or ident == "main"):
            continue  # a disabled main stays, empty, as the anchor for relative prompts
        content = d.content if enabled else ""
        if ident == "main" and inputs.system_prompt is not None and enabled:
            content = inputs.system_prompt
        if ident == "jailbreak" and inputs.post_history_instructions is not None:
            content = inputs.post_history_instructions
        prompts.append(_from_def(d, p.expand(content) if content else ""))
    for ident, role, content, anchor_at in _system_prompts(p, preset):
        d = preset.by_id.get(ident)
        prompt = Prompt(ident, role, content, anchor=anchor_at)
        at = next((i for i, q in enumerate(prompts) if q.identifier == ident), -1)
        if d is not None and at >= 0:  # the manager's role and depth apply to markers too
            prompt.role = d.role or prompt.role
            prompt.position = (
                d.injection_position if d.injection_position is not None else prompt.position
            )
            prompt.depth = d.injection_depth if d.injection_depth is not None else prompt.depth
            prompts[at] = prompt
        else:
            prompts.append(prompt)
    _override(
        p, prompts, preset, "main", inputs.character.system_prompt, inputs.prefer_character_prompt
    )
    _override(
        p,
        prompts,
        preset,
        "jailbreak",
        inputs.character.post_history_instructions,
        inputs.prefer_character_jailbreak,
    )
    return prompts


def _from_def(d: PromptDef, content: str) -> Prompt:
    return Prompt(
        d.identifier,
        d.role or "system",
        content,
        system_prompt=d.system_prompt,
        position=d.injection_position or 0,
        depth=d.injection_depth if d.injection_depth is not None else 4,
        order=d.injection_order,
    )


def _override(
    p: Prepared, prompts: list[Prompt], preset: ChatPreset, ident: str, card: str, prefer: bool
) -> None:
    card = card.strip() if prefer else ""
    d = preset.by_id.get(ident)
    target = next((q for q in prompts if q.identifier == ident), None)
    if not card or target is None or (d is not None and d.forbid_overrides):
        return
    target.content = p.expand(card, original=target.content)


def _system_prompts(p: Prepared, preset: ChatPreset) -> list[tuple[str, Role, str, str]]:
    inputs = p.inputs

    def wi(text: str) -> str:
        if not text:
            return ""
        return preset.wi_format.replace("{0}", text) if preset.wi_format.strip() else text

    out: list[tuple[str, Role, str, str]] = [
        ("worldInfoBefore", "system", p.expand(wi(p.wi_before)), ""),
        ("worldInfoAfter", "system", p.expand(wi(p.wi_after)), ""),
        ("charDescription", "system", p.expand(p.description), ""),
        (
            "charPersonality",
            "system",
            p.expand(preset.personality_format) if p.personality else "",
            "",
        ),
        ("scenario", "system", p.expand(preset.scenario_format) if p.scenario else "", ""),
        ("impersonate", "system", p.expand(preset.impersonation_prompt), ""),
        ("bias", "system", p.expand(inputs.prefill) if inputs.prefill.strip() else "", ""),
        ("groupNudge", "system", p.expand(preset.group_nudge_prompt), ""),
    ]
    for inj in sorted(p.injections, key=lambda i: i.key):  # relative extension prompts
        if inj.position in (Position.BEFORE_PROMPT, Position.IN_PROMPT) and inj.text:
            ident = "authorsNote" if inj.key == "2_floating_prompt" else _ident(inj.key)
            where = "start" if inj.position == Position.BEFORE_PROMPT else "end"
            out.append((ident, inj.role, inj.text, where))
    if p.persona_prompt:
        out.append(("personaDescription", "system", p.persona_prompt, ""))
    return out


def _ident(key: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in key)
