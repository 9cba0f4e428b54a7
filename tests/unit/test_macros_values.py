"""Every macro against one full context: exact strings, the injected clock and random source,
stable picks, and variables that persist through the caller's mappings."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.prompt.macro_time import format_moment, humanize
from bot.prompt.macros import (
    CardMacros,
    ChatMacros,
    MacroContext,
    PromptMacros,
    expand,
    expand_with,
)
from bot.types import ChatMessage

NOW = datetime(2024, 3, 5, 14, 7, 9, 250_000, tzinfo=timezone(timedelta(hours=2)))
T = NOW.timestamp()
HISTORY = (
    ChatMessage(0, "assistant", "Mira", "The lamp turns.", swipes=["The lamp turns.", "Alt"]),
    ChatMessage(1, "user", "Sam", "Hello there", created=T - 3 * 3600),
    ChatMessage(2, "system", "", "a note"),
    ChatMessage(3, "user", "Sam", "Tell me more", created=T - 60),
    ChatMessage(4, "assistant", "Mira", "Welcome.", swipes=["W0", "Welcome.", "W2"], swipe_id=1),
)
CHATML = {
    "story_string_prefix": "<|im_start|>system\n",
    "story_string_suffix": "<|im_end|>\n",
    "input_sequence": "<|im_start|>user",
    "input_suffix": "<|im_end|>\n",
    "output_sequence": "<|im_start|>assistant",
    "output_suffix": "<|im_end|>\n",
    "system_sequence": "<|im_start|>system",
    "system_suffix": "<|im_end|>\n",
    "last_output_sequence": "<|im_start|>assistant\n{{char}}:",
    "stop_sequence": "<|im_end|>",
    "user_alignment_message": "Let's begin.",
    "last_system_sequence": "<|im_start|>system\n[final]",
    "consecutive_assistant_message": "",
}
CTX = MacroContext(
    user="Sam",
    char="Mira",
    persona="A sailor named {{user}}.",  # data: stays as written
    card=CardMacros(
        description="{{char}} keeps the lighthouse.",
        personality="calm",
        scenario="A storm night.",
        char_prompt="",
        char_instruction="Stay in character, {{char}}.",
        depth_prompt="[{{char}} is tired]",
        creator_notes="Made for testing.",
        version="2.1",
        mes_examples="<|im_start|>user\nHi<|im_end|>",
        mes_examples_raw="<START>\n{{user}}: Hi",
        first_mes="The lamp turns, {{user}}.",
        alternate_greetings=("  Alt one  ", "Alt two for {{user}}"),
        image_prefix="oil painting",
        image_negative_prefix="blurry",
    ),
    prompt=PromptMacros(
        instruct_enabled=True,
        instruct=CHATML,
        system_prompt="Write {{char}}'s next reply.",
        example_separator="***",
        chat_start="<START>",
        reasoning_prefix="<think>",
        reasoning_suffix="</think>",
        reasoning_separator="\n\n",
        max_context=8192,
        max_response=300,
        model="llama-3-8b",
    ),
    chat=ChatMacros(
        history=HISTORY,
        first_included_message_id=1,
        first_displayed_message_id=0,
        last_generation_type="swipe",
        summary="They met.",
        authors_note="Keep it short.",
        char_authors_note="Mira whispers.",
        default_authors_note="Default note.",
        outlets={"Lore": "The sea is old.", "lore": "lower"},
        last_chat_message="The wind",
    ),
    now=NOW,
    chat_id="chat-1",
)


def run(text: str, ctx: MacroContext = CTX) -> str:
    return expand(text, ctx)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{user}}|{{char}}|{{persona}}", "Sam|Mira|A sailor named {{user}}."),
        ("{{group}}|{{groupNotMuted}}|{{charIfNotGroup}}|{{notChar}}", "Mira|Mira|Mira|Sam"),
        (
            "{{description}}|{{charDescription}}",
            "Mira keeps the lighthouse.|" * 1 + "Mira keeps the lighthouse.",
        ),
        (
            "{{personality}}|{{charPersonality}}|{{scenario}}|{{charScenario}}",
            "calm|calm|A storm night.|A storm night.",
        ),
        (
            "{{charPrompt}}|{{charInstruction}}|{{charJailbreak}}",
            "|Stay in character, Mira.|Stay in character, Mira.",
        ),
        (
            "{{charDepthPrompt}}|{{charCreatorNotes}}|{{creatorNotes}}",
            "[Mira is tired]|Made for testing.|Made for testing.",
        ),
        ("{{charVersion}}|{{version}}|{{char_version}}", "2.1|2.1|2.1"),
        ("{{mesExamples}}|{{mesExamplesRaw}}", "<|im_start|>user\nHi<|im_end|>|<START>\nSam: Hi"),
        ("{{charFirstMessage}}|{{greeting::0}}", "The lamp turns, Sam.|The lamp turns, Sam."),
        (
            "{{charFirstMessage::1}}|{{charFirstMessage::2}}|{{charFirstMessage::3}}|",
            "Alt one|Alt two for Sam||",
        ),
        ("{{charFirstMessage::x}}|{{charFirstMessage::1.5}}", "|"),
        ("{{charPrefix}}|{{charNegativePrefix}}", "oil painting|blurry"),
        # chat state
        (
            "{{lastMessage}}|{{lastUserMessage}}|{{lastCharMessage}}",
            "Welcome.|Tell me more|Welcome.",
        ),
        ("{{lastMessageId}}|{{firstIncludedMessageId}}|{{firstDisplayedMessageId}}", "4|1|0"),
        ("{{lastSwipeId}}|{{currentSwipeId}}|{{allChatRange}}", "3|2|0-4"),
        (
            "{{summary}}|{{lastGenerationType}}|{{isMobile}}|[{{input}}]",
            "They met.|swipe|false|[]",
        ),
        (
            "{{authorsNote}}|{{charAuthorsNote}}|{{defaultAuthorsNote}}",
            "Keep it short.|Mira whispers.|Default note.",
        ),
        ("{{outlet::Lore}}|{{outlet::lore}}|[{{outlet::none}}]", "The sea is old.|lower|[]"),
        # prompt and preset
        (
            "{{maxPrompt}}|{{maxContext}}|{{maxContextTokens}}|{{maxResponseTokens}}",
            "7892|8192|8192|300",
        ),
        ("{{model}}", "llama-3-8b"),
        (
            "{{systemPrompt}}|{{defaultSystemPrompt}}|{{instructSystem}}",
            "Write Mira's next reply.|" * 2 + "Write Mira's next reply.",
        ),
        ("{{exampleSeparator}}|{{chatSeparator}}|{{chatStart}}", "***|***|<START>"),
        (
            "{{reasoningPrefix}}|{{reasoningSuffix}}|{{reasoningSeparator}}",
            "<think>|</think>|\n\n",
        ),
        (
            "{{instructStoryStringPrefix}}{{instructSystemPromptSuffix}}",
            "<|im_start|>system\n<|im_end|>\n",
        ),
        (
            "{{instructUserPrefix}}|{{instructInput}}|{{instructUserSuffix}}",
            "<|im_start|>user|<|im_start|>user|<|im_end|>\n",
        ),
        (
            "{{instructAssistantPrefix}}|{{instructOutput}}",
            "<|im_start|>assistant|<|im_start|>assistant",
        ),
        ("{{instructAssistantSuffix}}|{{instructSeparator}}", "<|im_end|>\n|<|im_end|>\n"),
        ("{{instructSystemPrefix}}|{{instructSystemSuffix}}", "<|im_start|>system|<|im_end|>\n"),
        # first/last variants fall back to the base sequence; values are templates
        (
            "{{instructFirstAssistantPrefix}}|{{instructLastAssistantPrefix}}",
            "<|im_start|>assistant|<|im_start|>assistant\nMira:",
        ),
        ("{{instructFirstUserPrefix}}|{{instructLastInput}}", "<|im_start|>user|<|im_start|>user"),
        ("{{instructStop}}|{{instructUserFiller}}", "<|im_end|>|Let's begin."),
        ("{{instructSystemInstructionPrefix}}", "<|im_start|>system\n[final]"),
        # text utilities
        (
            "[{{newline}}][{{newline::3}}][{{space}}][{{space::2}}][{{space::0}}]",
            "[\n][\n\n\n][ ][  ][]",
        ),
        ("{{reverse::Hello}}|{{reverse:é✓x}}", "olleH|x✓é"),
        ("a{{noop}}b{{input}}c", "abc"),
        ("a{{comment: for authors}}b{{hidden_key: secret}}c{{comment}}x{{/comment}}", "abc"),
        ("[{{lastChatMessage}}]", "[The wind]"),
    ],
)
def test_values(text: str, expected: str) -> None:
    assert run(text) == expected


def test_group_names() -> None:
    ctx = replace(CTX, group=("Mira", "Ash", "Bo"), muted=frozenset({"Bo"}))
    text = "{{group}}|{{groupNotMuted}}|{{charIfNotGroup}}|{{notChar}}|<GROUP>|<CHARIFNOTGROUP>"
    assert (
        run(text, ctx) == "Mira, Ash, Bo|Mira, Ash|Mira, Ash, Bo|Ash|Mira, Ash, Bo|Mira, Ash, Bo"
    )


def test_switches_turn_instruct_and_system_macros_off() -> None:
    off = replace(
        CTX, prompt=replace(CTX.prompt, instruct_enabled=False, system_prompt_enabled=False)
    )
    assert (
        run(
            "[{{instructUserPrefix}}][{{instructStop}}][{{systemPrompt}}][{{defaultSystemPrompt}}]",
            off,
        )
        == "[][][][]"
    )


def test_system_prompt_prefers_the_card() -> None:
    card = replace(CTX.card, char_prompt="{{char}}'s own prompt")
    ctx = replace(CTX, card=card)
    assert run("{{systemPrompt}}|{{defaultSystemPrompt}}|{{charPrompt}}", ctx) == (
        "Mira's own prompt|Write Mira's next reply.|Mira's own prompt"
    )
    no_pref = replace(ctx, prompt=replace(CTX.prompt, prefer_character_prompt=False))
    assert run("{{systemPrompt}}", no_pref) == "Write Mira's next reply."


def test_empty_chat() -> None:
    ctx = replace(CTX, chat=ChatMacros())
    text = (
        "[{{lastMessage}}][{{lastMessageId}}][{{lastSwipeId}}][{{allChatRange}}][{{idleDuration}}]"
    )
    assert run(text, ctx) == "[][][][][just now]"


def test_maxprompt_without_budgets_is_empty() -> None:
    assert run("[{{maxPrompt}}][{{maxResponse}}]", replace(CTX, prompt=PromptMacros())) == "[][]"


# --- time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{{time}}|{{date}}|{{weekday}}|{{isotime}}|{{isodate}}",
            "2:07 PM|March 5, 2024|Tuesday|14:07|2024-03-05",
        ),
        (
            "{{time::UTC+0}}|{{time::UTC-5}}|{{time::UTC+330}}|{{time::bogus}}",
            "12:07 PM|7:07 AM|5:37 PM|2:07 PM",
        ),
        ("{{datetimeformat::YYYY-MM-DD HH:mm:ss Z}}", "2024-03-05 14:07:09 +02:00"),
        ("{{datetimeformat LLLL}}", "Tuesday, March 5, 2024 2:07 PM"),
        ("{{datetimeformat::[Day] DDDD, Do [of] MMMM}}", "Day 065, 5th of March"),
        ("{{idleDuration}}|{{idle_duration}}", "a minute|a minute"),
        ("{{timeDiff::2023-01-01 12:00:00::2023-01-01 15:00:00}}", "3 hours"),
        ("{{timeDiff::2024-03-05T14:07:09+02:00::March 1, 2024}}", "5 days"),
        ("{{timeDiff::yesterday::2024-01-01}}", "Invalid date"),
    ],
)
def test_time(text: str, expected: str) -> None:
    assert run(text) == expected


def test_a_naive_clock_is_read_as_utc() -> None:
    naive = replace(CTX, now=datetime(2024, 3, 5, 14, 7))  # noqa: DTZ001 - the case under test
    assert run("{{datetimeformat::HH:mm Z X}}", naive) == "14:07 +00:00 1709647620"


def test_time_macros_without_a_clock_stay_as_written() -> None:
    ctx = replace(CTX, now=None)
    text = (
        "{{time}} {{date}} {{weekday}} {{isotime}} {{isodate}} {{datetimeformat::YYYY}} "
        "{{idleDuration}}"
    )
    assert run(text, ctx) == text
    assert run("{{timeDiff::2023-01-01::2023-01-02}}", ctx) == "a day"  # needs no clock


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("YYYY YY Q", "2024 24 1"),
        ("MMMM MMM MM M Mo", "March Mar 03 3 3rd"),
        ("DDDD DDD DD D Do", "065 65 05 5 5th"),
        ("dddd ddd dd d E", "Tuesday Tue Tu 2 2"),
        ("HH H hh h kk k mm m ss s SSS", "14 14 02 2 14 14 07 7 09 9 250"),
        ("A a ZZ Z W WW", "PM pm +0200 +02:00 10 10"),
        ("X x", "1709640429 1709640429250"),
        ("LT|LTS|L|LL|LLL", "2:07 PM|2:07:09 PM|03/05/2024|March 5, 2024|March 5, 2024 2:07 PM"),
        ("[YYYY] = YYYY!", "YYYY = 2024!"),
    ],
)
def test_format_moment(fmt: str, expected: str) -> None:
    assert format_moment(NOW, fmt) == expected


def test_midnight_and_ordinals() -> None:
    midnight = datetime(2021, 11, 22, 0, 5, tzinfo=UTC)
    assert format_moment(midnight, "h A|kk|Do|Mo") == "12 AM|24|22nd|11th"
    assert [
        format_moment(midnight.replace(day=d), "Do") for d in (1, 2, 3, 11, 12, 13, 21, 23)
    ] == ["1st", "2nd", "3rd", "11th", "12th", "13th", "21st", "23rd"]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "a few seconds"),
        (44, "a few seconds"),
        (45, "a minute"),
        (89, "a minute"),
        (90, "2 minutes"),
        (44 * 60, "44 minutes"),
        (45 * 60, "an hour"),
        (89 * 60, "an hour"),
        (90 * 60, "2 hours"),
        (21 * 3600, "21 hours"),
        (22 * 3600, "a day"),
        (35 * 3600, "a day"),
        (36 * 3600, "2 days"),
        (25 * 86400, "25 days"),
        (26 * 86400, "a month"),
        (45 * 86400, "a month"),
        (46 * 86400, "2 months"),
        (319 * 86400, "10 months"),
        (320 * 86400, "a year"),
        (547 * 86400, "a year"),
        (548 * 86400, "2 years"),
        (-3 * 3600, "3 hours"),
    ],
)
def test_humanize_matches_moment_thresholds(seconds: int, expected: str) -> None:
    assert humanize(seconds * 1000) == expected


# --- randomness ---------------------------------------------------------------------------


def test_random_uses_the_injected_rng_and_rerolls() -> None:
    ctx = replace(CTX, rng=random.Random(42))
    twin = random.Random(42)
    items = ["red", "blue", "green", "gold"]
    expected = [items[twin.randrange(4)] for _ in range(3)]
    assert run(
        "{{random::red::blue::green::gold}}|{{random:red, blue, green, gold}}|"
        "{{random red,blue,green,gold}}",
        ctx,
    ) == "|".join(expected)


def test_random_single_and_escaped_items() -> None:
    ctx = replace(CTX, rng=random.Random(0))
    assert run("{{random::only}}|{{random:one\\, two}}", ctx) == "only|one, two"


def test_roll_uses_droll_syntax() -> None:
    ctx = replace(CTX, rng=random.Random(7))
    twin = random.Random(7)
    d20 = twin.randint(1, 20)
    three_d6 = sum(twin.randint(1, 6) for _ in range(3)) - 2
    d8 = twin.randint(1, 8) + 10
    assert run("{{roll 20}}|{{roll::3d6-2}}|{{roll:D8+10}}", ctx) == f"{d20}|{three_d6}|{d8}"


@pytest.mark.parametrize("formula", ["", "abc", "0", "0d6", "2d0", "2d6+", "d", "1d6 + 2", "2x6"])
def test_bad_dice_roll_to_nothing_with_a_warning(formula: str) -> None:
    result = expand_with(f"[{{{{roll::{formula}}}}}]", replace(CTX, rng=random.Random(1)))
    assert result.text == "[]"
    assert any("dice" in w for w in result.warnings)


def test_pick_is_stable_per_chat_text_and_position() -> None:
    text = "{{pick::a::b::c::d::e::f::g::h}}"
    first = run(text)
    assert all(run(text, replace(CTX, rng=random.Random(n))) == first for n in range(5))
    # each position is its own draw; a reroll seed and another chat draw again
    many = text * 40
    picks = run(many)
    assert len(set(picks)) > 1
    assert run(many, replace(CTX, pick_seed="reroll-1")) != picks
    assert run(many, replace(CTX, chat_id="chat-2")) != picks
    assert run(many) == picks
    # the legacy comma form picks from the same items
    assert set(run("{{pick:a,b,c,d,e,f,g,h}}" * 40)) <= set("abcdefgh")


def test_pick_golden() -> None:
    # pins the seed function: chat id, reroll seed, text hash and offset
    assert run("{{pick::a::b::c::d::e::f::g::h}}{{pick::1::2::3::4::5::6::7::8::9}}") == "g1"


def test_determinism_with_injected_clock_and_rng() -> None:
    text = "{{random::a::b::c}}{{roll::4d6}}{{pick::x::y::z}}{{time}}{{idleDuration}}{{.n++}}"

    def once() -> str:
        return run(text, replace(CTX, rng=random.Random(99), local_vars={}))

    assert once() == once()


# --- variables ------------------------------------------------------------------------------


def test_local_variables_persist_through_the_mapping() -> None:
    local: dict[str, str] = {}
    ctx = replace(CTX, local_vars=local)
    assert run("{{setvar::visits::1}}{{getvar::visits}}", ctx) == "1"
    assert run("{{incvar::visits}}", ctx) == "2"
    assert local == {"visits": "2"}
    # a new context over the same mapping sees the stored value
    assert run("{{getvar::visits}}", replace(CTX, local_vars=local)) == "2"


def test_global_variables_are_shared_between_chats() -> None:
    shared: dict[str, str] = {}
    one = replace(CTX, chat_id="a", local_vars={}, global_vars=shared)
    two = replace(CTX, chat_id="b", local_vars={}, global_vars=shared)
    run("{{setglobalvar::met::yes}}{{setvar::here::1}}", one)
    assert run("{{getglobalvar::met}}|{{getvar::here}}|{{$met}}", two) == "yes||yes"


def test_without_mappings_variables_live_for_one_call() -> None:
    assert run("{{setvar::a::1}}{{getvar::a}}") == "1"
    assert run("{{getvar::a}}") == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{setvar::a::007}}{{getvar::a}}", "7"),  # numbers read as JavaScript's Number()
        ("{{setvar::a:: 5 }}{{getvar::a}}", "5"),
        ("{{setvar::a::0x1A}}{{getvar::a}}", "26"),
        ("{{setvar::a::1_000}}{{getvar::a}}", "1_000"),
        ("{{setvar::a::nan}}{{getvar::a}}", "nan"),
        ("{{incvar::n}}{{incvar::n}}|{{decvar::m}}", "12|-1"),
        ("{{addvar::f::0.1}}{{addvar::f::0.2}}{{getvar::f}}", "0.30000000000000004"),
        ("{{setvar::s::abc}}{{incvar::s}}", "abc1"),
        ("{{setvar::n::5}}{{addvar::n::x}}{{getvar::n}}", "5x"),
        ("{{addvar::e::}}{{getvar::e}}|{{hasvar::e}}", "0|true"),
        ('{{setvar::l::["a"]}}{{addvar::l::b}}{{incvar::l}}', '["a","b",1]'),
        (
            "{{setvar::big::1e21}}{{getvar::big}}|{{setvar::t::0.000001}}{{getvar::t}}",
            "1e+21|0.000001",
        ),
        ("{{hasvar::a}}{{setvar::a::}}{{hasvar::a}}{{varexists::a}}", "falsetruetrue"),
        (
            "{{setvar::a::1}}{{deletevar::a}}{{hasvar::a}}{{setvar::a::1}}{{flushvar::a}}{{hasvar::a}}",
            "falsefalse",
        ),
        (
            "{{setglobalvar::g::2}}{{addglobalvar::g::3}}{{getglobalvar::g}}|{{incglobalvar::g}}|{{decglobalvar::g}}",
            "5|6|5",
        ),
        (
            "{{hasglobalvar::g}}{{globalvarexists::g}}{{setglobalvar::g::1}}{{deleteglobalvar::g}}{{hasglobalvar::g}}",
            "falsefalsefalse",
        ),
        ("{{setvar:: spaced name ::v}}{{getvar::spaced name}}", "v"),
    ],
)
def test_variable_macros(text: str, expected: str) -> None:
    assert run(text, replace(CTX, local_vars={}, global_vars={})) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{.a = Hello World}}{{.a}}", "Hello World"),
        ("{{ .a = spaced value }}[{{ .a }}]", "[spaced value]"),
        ("{{.c++}}{{.c++}}{{ .c ++ }}|{{.d--}}", "123|-1"),
        ("{{.s = 10}}{{.s += 5}}{{.s}}|{{.s -= 3}}{{.s}}", "15|12"),
        ("{{.s = ab}}{{.s += cd}}{{.s}}", "abcd"),
        ("{{.s = 1}}{{.s -= x}}{{.s}}", "1"),
        ("{{.name || Guest}}|{{.e = 0}}{{.e || zero}}|{{.f = x}}{{.f || no}}", "Guest|zero|x"),
        ("{{.name ?? Guest}}|{{.e = }}[{{.e ?? unset}}]", "Guest|[]"),
        ("{{.n ||= first}}|{{.n ||= second}}|{{.n}}", "first|first|first"),
        ("{{.m ??= one}}{{.m ??= two}}{{.m}}", "oneoneone"),
        ("{{.st = active}}{{.st == active}}{{.st != active}}{{.none == }}", "truefalsetrue"),
        (
            "{{.x = 12}}{{.x > 5}}{{.x >= 12}}{{.x < 5}}{{.x <= 12}}{{.x > abc}}",
            "truetruefalsetruefalse",
        ),
        ("{{.my-var = 1}}{{.my_var = 2}}{{.myVar3 = 3}}{{.my-var}}{{.my_var}}{{.myVar3}}", "123"),
        ("{{$g = 1}}{{$g++}}|{{getglobalvar::g}}", "2|2"),
        ("{{.greeting = Hello, {{user}}!}}{{.greeting}}", "Hello, Sam!"),
        ("{{if {{.x == 1}}}}yes{{else}}no{{/if}}", "no"),
        # not a shorthand: left as written
        ("{{.a +}} {{.a ++ x}} {{.}}", "{{.a +}} {{.a ++ x}} {{.}}"),
    ],
)
def test_variable_shorthands(text: str, expected: str) -> None:
    assert run(text, replace(CTX, local_vars={}, global_vars={})) == expected


def test_lazy_fallbacks_are_not_evaluated_when_unused() -> None:
    local: dict[str, str] = {"set": "yes"}
    run(
        "{{.set || {{setvar::side::1}}}}{{.set ?? {{setvar::side::1}}}}",
        replace(CTX, local_vars=local),
    )
    assert "side" not in local
