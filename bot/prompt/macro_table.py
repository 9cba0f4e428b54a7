"""The built-in macro table: one handler per name; aliases share a handler.

Every name of SillyTavern's macro table that means something on a server is here (the
context-free ones come from :func:`bot.prompt.macro_lib.utility_macros`). Left out, so they
stay as written: ``{{bias}}`` (a user-message prefill, not card text), ``{{hasExtension}}``,
``{{match}}`` (regex replacement only), ``{{timesIndex}}``. ``{{input}}`` is always empty
(there is no input box) and ``{{isMobile}}`` is "false". The V3 card spec's
``{{comment: …}}`` and ``{{hidden_key: …}}`` produce nothing (SillyTavern leaves the second
as written; world-info scanning of hidden keys is the lorebook's business).
"""

from __future__ import annotations

from collections.abc import Callable

from bot.prompt.macro_env import MacroContext
from bot.prompt.macro_lib import Host, Site, Spec, clean, utility_macros
from bot.prompt.macro_time import at_utc_offset, format_moment, humanize, parse_time
from bot.prompt.macro_vars import js_number
from bot.types import ChatMessage


def _data(get: Callable[[MacroContext], str]) -> Spec:
    return Spec(lambda host, args, site: clean(get(host.ctx)))


def _template(get: Callable[[MacroContext], str]) -> Spec:
    return Spec(lambda host, args, site: host.template(get(host.ctx)))


# --- names -------------------------------------------------------------------------------


def _group(host: Host, muted_too: bool) -> str:
    ctx = host.ctx
    if not ctx.group:
        return clean(ctx.char)
    return clean(", ".join(m for m in ctx.group if muted_too or m not in ctx.muted))


def _not_char(host: Host, args: list[str], site: Site) -> str:
    ctx = host.ctx
    if not ctx.group:
        return clean(ctx.user)
    return clean(", ".join(m for m in ctx.group if m not in ctx.muted and m != ctx.char))


# --- chat state --------------------------------------------------------------------------


def _last(history: list[ChatMessage] | tuple[ChatMessage, ...], role: str) -> str:
    for msg in reversed(history):
        if not role or msg.role == role:
            return clean(msg.text)
    return ""


def _history(host: Host) -> list[ChatMessage] | tuple[ChatMessage, ...]:
    history = host.ctx.chat.history
    return history if isinstance(history, list | tuple) else tuple(history)


def _swipe(host: Host, current: bool) -> str:
    history = _history(host)
    if not history or not history[-1].swipes:
        return ""
    last = history[-1]
    return str(last.swipe_id + 1 if current else len(last.swipes))


def _optional_id(value: int | None) -> str:
    return "" if value is None else str(value)


def _idle(host: Host, args: list[str], site: Site) -> str:
    # SillyTavern skips the newest message, then takes the next message a user sent
    take_next = False
    for msg in reversed(_history(host)):
        if msg.role == "system":
            continue
        if msg.role == "user" and take_next:
            if msg.created and host.ctx.now is not None:
                return humanize((host.ctx.now.timestamp() - msg.created) * 1000)
            break
        take_next = True
    return "just now"


# --- time --------------------------------------------------------------------------------


def _clock(fmt: str) -> Spec:
    def handler(host: Host, args: list[str], site: Site) -> str:
        assert host.ctx.now is not None
        return format_moment(host.ctx.now, fmt)

    return Spec(handler, clock=True)


def _time(host: Host, args: list[str], site: Site) -> str:
    now = host.ctx.now
    assert now is not None
    shifted = at_utc_offset(now, args[0]) if args and args[0] else None
    return format_moment(shifted or now, "LT")


def _datetimeformat(host: Host, args: list[str], site: Site) -> str:
    assert host.ctx.now is not None
    return format_moment(host.ctx.now, args[0])


def _time_diff(host: Host, args: list[str], site: Site) -> str:
    zone = host.ctx.now.tzinfo if host.ctx.now is not None else None
    left, right = parse_time(args[0], zone), parse_time(args[1], zone)
    if left is None or right is None:
        return "Invalid date"  # what moment says for a time it cannot read
    return humanize((left - right).total_seconds() * 1000)


def _first_message(host: Host, args: list[str], site: Site) -> str:
    card = host.ctx.card
    index = js_number(clean(args[0])) if args else 0.0
    if index is None or index != int(index) or index < 0:
        return ""
    i = int(index)
    if i == 0:
        return host.template(card.first_mes)
    greetings = card.alternate_greetings
    return host.template(greetings[i - 1].strip()) if i <= len(greetings) else ""


# --- prompt and preset -------------------------------------------------------------------


def _instruct(key: str, fallback: str = "") -> Spec:
    def handler(host: Host, args: list[str], site: Site) -> str:
        prompt = host.ctx.prompt
        if not prompt.instruct_enabled:
            return ""
        value = str(prompt.instruct.get(key) or "")
        if not value and fallback:
            value = str(prompt.instruct.get(fallback) or "")
        return host.template(value)

    return Spec(handler)


def _system_prompt(default_only: bool) -> Spec:
    def handler(host: Host, args: list[str], site: Site) -> str:
        prompt, card = host.ctx.prompt, host.ctx.card
        if not prompt.system_prompt_enabled:
            return ""
        if not default_only and prompt.prefer_character_prompt and card.char_prompt:
            return host.template(card.char_prompt)
        return host.template(prompt.system_prompt)

    return Spec(handler)


def _budget(which: str) -> Spec:
    def handler(host: Host, args: list[str], site: Site) -> str:
        p = host.ctx.prompt
        if which == "prompt":
            return "" if p.max_context is None else str(p.max_context - (p.max_response or 0))
        return _optional_id(p.max_context if which == "context" else p.max_response)

    return Spec(handler)


def _table() -> dict[str, Spec]:
    table: dict[str, Spec] = {
        "user": _data(lambda c: c.user),
        "char": _data(lambda c: c.char),
        "group": Spec(lambda h, a, s: _group(h, True)),
        "charifnotgroup": Spec(lambda h, a, s: _group(h, True)),
        "groupnotmuted": Spec(lambda h, a, s: _group(h, False)),
        "notchar": Spec(_not_char),
        "persona": _data(lambda c: c.persona),
        "original": Spec(lambda h, a, s: h.original()),
        "charfirstmessage": Spec(_first_message, 0, 1),
        "greeting": Spec(_first_message, 0, 1),
        "mesexamples": _template(lambda c: c.card.mes_examples or c.card.mes_examples_raw),
        "mesexamplesraw": _template(lambda c: c.card.mes_examples_raw),
        "lastmessage": Spec(lambda h, a, s: _last(_history(h), "")),
        "lastusermessage": Spec(lambda h, a, s: _last(_history(h), "user")),
        "lastcharmessage": Spec(lambda h, a, s: _last(_history(h), "assistant")),
        "lastmessageid": Spec(lambda h, a, s: str(len(_history(h)) - 1) if _history(h) else ""),
        "firstincludedmessageid": _data(lambda c: _optional_id(c.chat.first_included_message_id)),
        "firstdisplayedmessageid": _data(
            lambda c: _optional_id(c.chat.first_displayed_message_id)
        ),
        "lastswipeid": Spec(lambda h, a, s: _swipe(h, current=False)),
        "currentswipeid": Spec(lambda h, a, s: _swipe(h, current=True)),
        "allchatrange": Spec(lambda h, a, s: f"0-{len(_history(h)) - 1}" if _history(h) else ""),
        "summary": _data(lambda c: c.chat.summary),
        "authorsnote": _data(lambda c: c.chat.authors_note),
        "charauthorsnote": _data(lambda c: c.chat.char_authors_note),
        "defaultauthorsnote": _data(lambda c: c.chat.default_authors_note),
        "lastgenerationtype": _data(lambda c: c.chat.last_generation_type),
        "outlet": Spec(lambda h, a, s: clean(h.ctx.chat.outlets.get(a[0], "")), 1, 1),
        "lastchatmessage": _data(lambda c: c.chat.last_chat_message),
        "ismobile": Spec(lambda h, a, s: "false"),
        # the V3 card spec's comment forms: removed from the prompt
        "comment": Spec(lambda h, a, s: "", 0, -1),
        "hidden_key": Spec(lambda h, a, s: "", 0, -1),
        "time": Spec(_time, 0, 1, clock=True),
        "date": _clock("LL"),
        "weekday": _clock("dddd"),
        "isotime": _clock("HH:mm"),
        "isodate": _clock("YYYY-MM-DD"),
        "datetimeformat": Spec(_datetimeformat, 1, 1, clock=True),
        "idleduration": Spec(_idle, clock=True),
        "idle_duration": Spec(_idle, clock=True),
        "timediff": Spec(_time_diff, 2, 2),
        "maxprompt": _budget("prompt"),
        "maxprompttokens": _budget("prompt"),
        "maxcontext": _budget("context"),
        "maxcontexttokens": _budget("context"),
        "maxresponse": _budget("response"),
        "maxresponsetokens": _budget("response"),
        "model": _data(lambda c: c.prompt.model),
        "systemprompt": _system_prompt(default_only=False),
        "exampleseparator": _template(lambda c: c.prompt.example_separator),
        "chatseparator": _template(lambda c: c.prompt.example_separator),
        "chatstart": _template(lambda c: c.prompt.chat_start),
        "reasoningprefix": _template(lambda c: c.prompt.reasoning_prefix),
        "reasoningsuffix": _template(lambda c: c.prompt.reasoning_suffix),
        "reasoningseparator": _template(lambda c: c.prompt.reasoning_separator),
    }
    card_fields: dict[str, Callable[[MacroContext], str]] = {
        "description": lambda c: c.card.description,
        "personality": lambda c: c.card.personality,
        "scenario": lambda c: c.card.scenario,
        "charprompt": lambda c: c.card.char_prompt,
        "charinstruction": lambda c: c.card.char_instruction,
        "chardepthprompt": lambda c: c.card.depth_prompt,
        "charcreatornotes": lambda c: c.card.creator_notes,
        "charversion": lambda c: c.card.version,
        "charprefix": lambda c: c.card.image_prefix,
        "charnegativeprefix": lambda c: c.card.image_negative_prefix,
    }
    aliases = {
        "chardescription": "description",
        "charpersonality": "personality",
        "charscenario": "scenario",
        "charjailbreak": "charinstruction",
        "creatornotes": "charcreatornotes",
        "version": "charversion",
        "char_version": "charversion",
    }
    for name, get in card_fields.items():
        table[name] = _template(get)
    for alias, name in aliases.items():
        table[alias] = table[name]
    default_prompt = _system_prompt(default_only=True)
    for name in ("defaultsystemprompt", "instructsystem", "instructsystemprompt"):
        table[name] = default_prompt
    instruct = {
        ("instructstorystringprefix", "instructsystempromptprefix"): ("story_string_prefix", ""),
        ("instructstorystringsuffix", "instructsystempromptsuffix"): ("story_string_suffix", ""),
        ("instructuserprefix", "instructinput"): ("input_sequence", ""),
        ("instructusersuffix",): ("input_suffix", ""),
        ("instructassistantprefix", "instructoutput"): ("output_sequence", ""),
        ("instructassistantsuffix", "instructseparator"): ("output_suffix", ""),
        ("instructsystemprefix",): ("system_sequence", ""),
        ("instructsystemsuffix",): ("system_suffix", ""),
        ("instructfirstassistantprefix", "instructfirstoutputprefix"): (
            "first_output_sequence",
            "output_sequence",
        ),
        ("instructlastassistantprefix", "instructlastoutputprefix"): (
            "last_output_sequence",
            "output_sequence",
        ),
        ("instructfirstuserprefix", "instructfirstinput"): (
            "first_input_sequence",
            "input_sequence",
        ),
        ("instructlastuserprefix", "instructlastinput"): ("last_input_sequence", "input_sequence"),
        ("instructstop",): ("stop_sequence", ""),
        ("instructuserfiller",): ("user_alignment_message", ""),
        ("instructsysteminstructionprefix",): ("last_system_sequence", ""),
        ("instructconsecutiveassistantmessage",): ("consecutive_assistant_message", ""),
    }
    for names, (key, fallback) in instruct.items():
        spec = _instruct(key, fallback)
        for name in names:
            table[name] = spec
    table.update(utility_macros())
    return table


MACROS: dict[str, Spec] = _table()
# names that may open a block ({{name …}}…{{/name}}), with the most arguments they take
SCOPED: dict[str, int] = {k: s.max_args for k, s in MACROS.items() if s.max_args} | {"if": 2}
