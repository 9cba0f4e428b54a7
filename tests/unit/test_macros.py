"""The safe macro subset: what expands, what stays, and that nothing expands twice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.prompt.macros import MacroContext, expand

CTX = MacroContext(user="Sam", char="Mira", original="Be kind.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{char}} greets {{user}}.", "Mira greets Sam."),
        ("{{CHAR}} and {{User}} and {{ char }}", "Mira and Sam and Mira"),
        ("<USER> meets <BOT>, also <CHAR>; <user> too", "Sam meets Mira, also Mira; Sam too"),
        ("line{{newline}}next", "line\nnext"),
        ("a{{noop}}b{{// a note for authors }}c", "abc"),
        ("keep\n\n{{trim}}\n\nthis", "keepthis"),
        ("x{{newline}}{{newline}}{{trim}}y", "xy"),  # newline runs before trim, as in ST
        (
            "{{random:a,b}} {{getvar::x}} {{unknown}} {{",
            "{{random:a,b}} {{getvar::x}} {{unknown}} {{",
        ),
        ("<USERS> <b>bold</b>", "<USERS> <b>bold</b>"),
        ("", ""),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, CTX) == expected


def test_original_expands_once() -> None:
    assert expand("{{original}} Then: {{original}}", CTX) == "Be kind. Then: "


def test_extra_values_are_case_insensitive() -> None:
    ctx = MacroContext("Sam", "Mira", extra={"lastChatMessage": "The wind"})
    assert expand("[Continue: {{lastchatmessage}}]", ctx) == "[Continue: The wind]"


def test_values_are_never_expanded_again() -> None:
    sneaky = MacroContext(user="{{char}}<BOT>", char="{{user}}", original="{{original}}")
    assert (
        expand("{{user}}|{{char}}|{{original}}", sneaky) == "{{char}}<BOT>|{{user}}|{{original}}"
    )
    # regex replacement syntax in a value is inserted literally too
    assert expand("{{user}}", MacroContext(user=r"\1\g<0>", char="")) == r"\1\g<0>"


@pytest.mark.timeout(10)
def test_long_runs_stay_linear() -> None:
    # a regex around {{trim}} would backtrack quadratically over these
    newlines = "\n" * 200_000 + "x"
    assert expand(newlines, CTX) == newlines
    braces = "{{" * 100_000 + "{{user}}"
    assert expand(braces, CTX) == "{{" * 100_000 + "Sam"
    trims = "{{trim}}\n" * 50_000
    assert expand(trims, CTX) == ""


_PIECES = ["{{", "}}", "{", "}", "<", ">", "USER", "BOT", "user", "char", "trim", "//", "\n", "a"]


@given(st.lists(st.sampled_from(_PIECES)).map("".join))
def test_output_is_bounded_by_input(text: str) -> None:
    # each macro turns into at most one 8-character value; nothing grows from values
    ctx = MacroContext(user="12345678", char="12345678", original="12345678")
    assert len(expand(text, ctx)) <= len(text) + 8 * (text.count("{{") + text.count("<"))
