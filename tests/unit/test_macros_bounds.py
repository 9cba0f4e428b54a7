"""Macro bombs end quickly with a bounded result, the parser survives any input, and text typed
by chat users only ever gets the names.

Bounds are asserted through the limits (output size, warnings, stored sizes), not timing; the
timeout marks only turn a hang into a failure.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.macro_parse import Call, ParseCache, parse
from bot.prompt.macro_table import SCOPED
from bot.prompt.macros import (
    CardMacros,
    MacroContext,
    MacroLimits,
    expand,
    expand_user_text,
    expand_with,
)

LIMITS = MacroLimits(max_output=20_000, max_steps=2_000, max_var_chars=4_096)
CTX = MacroContext(user="Sam", char="Mira", original="Be kind.", limits=LIMITS)


def bounded(text: str, ctx: MacroContext = CTX) -> tuple[str, tuple[str, ...]]:
    result = expand_with(text, ctx)
    # literal text passes through; what macros add is capped by max_output
    assert len(result.text) <= len(text) + ctx.limits.max_output
    return result.text, result.warnings


@pytest.mark.timeout(20)
def test_deep_inline_nesting_is_cut_at_the_depth_limit() -> None:
    text = "{{reverse::" * 5_000 + "x" + "}}" * 5_000
    out, _ = bounded(text)
    # beyond the parser's depth the braces are text; the innermost parsed levels expand
    assert out.startswith("{{reverse::" * (5_000 - LIMITS.max_depth))


@pytest.mark.timeout(20)
def test_deep_block_nesting_is_written_back_past_the_depth_limit() -> None:
    depth = 3_000
    text = "{{if 1}}" * depth + "core" + "{{/if}}" * depth
    out, warnings = bounded(text, replace(CTX, limits=replace(LIMITS, max_steps=10_000)))
    assert "core" in out
    assert any("deeper than" in w for w in warnings)


@pytest.mark.timeout(20)
def test_doubling_a_variable_stops_at_the_variable_limit() -> None:
    local: dict[str, str] = {}
    ctx = replace(CTX, local_vars=local, limits=replace(LIMITS, max_output=1_000_000))
    step = "{{setvar::a::{{getvar::a}}{{getvar::a}}}}"
    text = "{{setvar::a::xy}}" + step * 64 + "{{getvar::a}}"
    out, warnings = bounded(text, ctx)
    assert len(local["a"]) == 2**12  # the last doubling that fits in 4,096 characters
    assert any("not changed" in w for w in warnings)
    assert out == local["a"]


@pytest.mark.timeout(20)
def test_doubling_under_a_small_output_budget_stores_no_half_expanded_text() -> None:
    local: dict[str, str] = {}
    step = "{{setvar::a::{{getvar::a}}{{getvar::a}}}}"
    text = "{{setvar::a::xy}}" + step * 64 + "{{getvar::a}}"
    out, warnings = bounded(text, replace(CTX, local_vars=local))
    assert any("stopped" in w for w in warnings)
    assert set(local["a"]) == {"x", "y"}
    assert out.endswith(step + "{{getvar::a}}")


@pytest.mark.timeout(20)
def test_doubling_through_shorthands_is_bounded_too() -> None:
    for limits in (LIMITS, replace(LIMITS, max_output=1_000_000)):
        local: dict[str, str] = {}
        text = "{{.a = ab}}" + "{{.a += {{.a}}}}" * 64 + "{{.a}}"
        bounded(text, replace(CTX, local_vars=local, limits=limits))
        assert len(local["a"]) <= LIMITS.max_var_chars
        assert set(local["a"]) == {"a", "b"}


@pytest.mark.timeout(20)
def test_output_limit_stops_expansion_and_keeps_the_rest() -> None:
    local = {"big": "x" * 3_000}
    text = "{{getvar::big}}" * 50 + "tail {{user}}"
    out, warnings = bounded(text, replace(CTX, local_vars=local))
    assert any("stopped" in w for w in warnings)
    assert out.endswith("{{getvar::big}}tail {{user}}")  # left as written after the stop
    assert out.startswith("x" * 3_000 * 6)


@pytest.mark.timeout(20)
def test_self_including_card_text_stops_at_the_step_limit() -> None:
    card = CardMacros(description="{{description}}{{description}}")
    out, warnings = bounded("{{description}}", replace(CTX, card=card))
    assert any("more than" in w or "deeper than" in w for w in warnings)
    assert "{{description}}" in out


@pytest.mark.timeout(20)
def test_macros_past_the_step_limit_are_not_even_parsed() -> None:
    text = "{{user}}" * 5_000
    out, warnings = bounded(text)
    assert out == "Sam" * LIMITS.max_steps + "{{user}}" * (5_000 - LIMITS.max_steps)
    assert any("over 2000 macros in one text" in w for w in warnings)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "text",
    [
        "{{roll::999999999d999999999}}",
        "{{roll::1001d6}}",
        "{{roll::1d1000000001}}",
        "{{roll::" + "9" * 5_000 + "}}",
        "{{roll::" + "9" * 5_000 + "d6}}",
    ],
)
def test_huge_rolls_give_nothing(text: str) -> None:
    out, warnings = bounded(text, replace(CTX, rng=random.Random(1)))
    assert out == ""
    assert warnings


def test_roll_at_the_dice_limit_still_rolls() -> None:
    out, _ = bounded("{{roll::1000d6}}", replace(CTX, rng=random.Random(1)))
    assert 1_000 <= int(out) <= 6_000


@pytest.mark.timeout(20)
@pytest.mark.parametrize("text", ["{{newline::1000000000}}", "{{space::1e300}}", "{{space::-1}}"])
def test_huge_repeat_counts_give_nothing(text: str) -> None:
    out, warnings = bounded(text)
    assert out == ""
    assert warnings


@pytest.mark.timeout(20)
def test_long_runs_stay_linear() -> None:
    # a regex around {{trim}} would backtrack quadratically over these
    ctx = MacroContext("Sam", "Mira")
    newlines = "\n" * 200_000 + "x"
    assert expand(newlines, ctx) == newlines
    braces = "{{" * 100_000 + "{{user}}"
    assert expand(braces, ctx) == "{{" * 100_000 + "Sam"
    trims = "{{trim}}\n" * 15_000
    assert expand(trims, ctx) == ""
    openers = "{{if a}}" * 20_000 + "{{/if}}" * 20_000  # pairing stays linear too
    assert len(parse(openers, SCOPED, 24, 50_000).nodes) == 1
    orphans = "{{setvar x}}" * 20_000 + "{{/reverse}}" * 20_000
    assert len(parse(orphans, SCOPED, 24, 50_000).nodes) == 40_000
    digits = "{{setvar::n::" + "1" * 60_000 + "x}}{{getvar::n}}{{incvar::n}}"
    assert expand(digits, ctx).startswith("1" * 60_000)


def test_parse_cache_reuses_and_evicts() -> None:
    cache = ParseCache(max_entries=2)
    a = cache.parse("{{user}}", SCOPED, 24, 100)
    assert cache.parse("{{user}}", SCOPED, 24, 100) is a
    cache.parse("{{char}}", SCOPED, 24, 100)
    cache.parse("{{a}}", SCOPED, 24, 100)  # evicts the least recently used: "{{user}}"
    assert cache.parse("{{user}}", SCOPED, 24, 100) is not a
    ctx = replace(CTX, cache=cache)
    assert expand("{{if user}}{{char}}{{/if}}", ctx) == expand("{{if user}}{{char}}{{/if}}", ctx)


@pytest.mark.timeout(20)
def test_evaluations_stop_at_the_step_limit() -> None:
    # few macros in the text, many evaluations: a loop through card text
    card = CardMacros(description="{{user}}" * 100)
    out, warnings = bounded("{{description}}" * 100, replace(CTX, card=card))
    assert out.startswith(("Sam" * 100) * 19)
    assert out.endswith("{{description}}")
    assert any("more than 2000 macros" in w for w in warnings)


def test_parsed_calls_keep_their_source_spans() -> None:
    text = "ab{{if x}}c{{/if}}d"
    (_, block, _) = parse(text, SCOPED, 24, 100).nodes
    assert isinstance(block, Call)
    assert text[block.start : block.close_end] == "{{if x}}c{{/if}}"


_PIECES = [
    "{{",
    "}}",
    "{",
    "}",
    "\\{",
    "\\}",
    "<",
    ">",
    "USER",
    "BOT",
    "<CHAR>",
    "user",
    "char",
    "trim",
    "noop",
    "//",
    "///",
    "#",
    "/",
    "!",
    ".",
    "$",
    "::",
    ":",
    " ",
    "\n",
    "a",
    "0",
    "if",
    "else",
    "/if",
    "setvar",
    "getvar",
    "::a::",
    "incvar",
    "addvar",
    "random",
    "pick",
    "roll",
    "5d6",
    "reverse",
    "description",
    "original",
    "newline",
    "space",
    "9999",
    "=",
    "++",
    "+=",
    "||",
    "??=",
    "==",
    ">",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=60).map("".join))
def test_any_macro_soup_finishes_bounded(text: str) -> None:
    card = CardMacros(description="{{description}}{{getvar::a}}{{description}}")
    ctx = replace(CTX, card=card, rng=random.Random(0), local_vars={}, global_vars={})
    bounded(text, ctx)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_finishes_bounded(text: str) -> None:
    bounded(text, replace(CTX, rng=random.Random(0)))


@given(
    st.lists(
        st.sampled_from(
            ["{{", "}}", "<", ">", "USER", "BOT", "user", "char", "trim", "//", "\n", "a"]
        )
    ).map("".join)
)
def test_names_only_output_is_bounded_by_input(text: str) -> None:
    # each of these macros turns into at most one 8-character value; nothing grows from values
    ctx = MacroContext(user="12345678", char="12345678", original="12345678")
    assert len(expand(text, ctx)) <= len(text) + 8 * (text.count("{{") + text.count("<"))


# --- text typed by chat users ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi {{char}}, I am {{ USER }}.", "Hi Mira, I am Sam."),
        ("<BOT> and <user> and <CHAR>", "Mira and Sam and Mira"),
        (
            "{{setvar::x::1}}{{getvar::x}}{{random::a::b}}{{description}}{{time}}",
            "{{setvar::x::1}}{{getvar::x}}{{random::a::b}}{{description}}{{time}}",
        ),
        (
            "\\{\\{user\\}\\} {{// not a comment here}}",
            "\\{\\{user\\}\\} {{// not a comment here}}",
        ),
        ("{{user{{char}}}}", "{{userMira}}"),
        ("", ""),
    ],
)
def test_user_text_gets_names_only(text: str, expected: str) -> None:
    assert expand_user_text(text, CTX) == expected


def test_user_text_names_are_literal() -> None:
    ctx = MacroContext(user="{{char}}", char="{{user}}")
    assert expand_user_text("{{user}} {{char}}", ctx) == "{{char}} {{user}}"


@given(st.text(max_size=200))
def test_user_text_grows_by_names_only(text: str) -> None:
    ctx = MacroContext(user="12345678", char="12345678")
    out = expand_user_text(text, ctx)
    assert len(out) <= len(text) + 8 * (text.count("{{") + text.count("<"))
