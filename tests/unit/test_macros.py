"""Macro syntax: every form of the superset, nesting, blocks, if/else, comments, escapes, the
1.12.6 legacy behaviours, and that values are never expanded twice."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bot.prompt.macros import CardMacros, MacroContext, expand, expand_with

CARD = CardMacros(description="{{char}} keeps the lighthouse.", personality="calm")
CTX = MacroContext(user="Sam", char="Mira", original="Be kind.", card=CARD)


def run(text: str, ctx: MacroContext = CTX) -> str:
    return expand(text, ctx)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # names, case and whitespace
        ("{{char}} greets {{user}}.", "Mira greets Sam."),
        ("{{CHAR}} and {{User}} and {{ char }} and {{\tuser\n}}", "Mira and Sam and Mira and Sam"),
        # argument separators: space, "::", legacy ":", whitespace around them
        ("{{reverse Hello World}}", "dlroW olleH"),
        ("{{reverse::abc}}|{{reverse:abc}}|{{ reverse :: abc }}", "cba|cba|cba"),
        ("{{setvar::k::v}}{{getvar k}}|{{getvar::k}}|{{ getvar :: k }}", "v|v|v"),
        # nesting resolves inner first
        ("{{setvar::Mira_mood::glad}}{{getvar::{{char}}_mood}}", "glad"),
        ("{{reverse::{{reverse::{{user}}}}}}", "Sam"),
        ("{{setvar::g::Hello, {{user}}!}}{{getvar::g}}", "Hello, Sam!"),
        # "{{{" opens at its last two braces, as a regex for {{name}} would find it
        ("{{{user}}}", "{Sam}"),
        ("{{" * 3 + "char}}", "{{{{Mira"),
        # comments, inline and block
        ("a{{// a note for authors }}b{{//note}}c", "abc"),
        ("a{{// hides {{user}} too }}b", "ab"),
        ("x{{//}}\nall of {{user}} this\n{{ /// }}y", "xy"),
        ("x{{ // }}never closed", "xnever closed"),
        # escapes
        ("\\{\\{notAMacro\\}\\}", "{{notAMacro}}"),
        ("\\{\\{user\\}\\} is {{user}}", "{{user}} is Sam"),
        ("a \\ b", "a \\ b"),
        # unknown and malformed macros stay as written, with what is inside them expanded
        ("{{unknown}} {{name}} {{user's}} {{a.b}}", "{{unknown}} {{name}} {{user's}} {{a.b}}"),
        ("{{unknown::{{user}}}}", "{{unknown::Sam}}"),
        ("{{ }} {{}} {{#}} {{ {{user}} }}", "{{ }} {{}} {{#}} {{ Sam }}"),
        ("{{getvar}} {{reverse}} {{user::x}}", "{{getvar}} {{reverse}} {{user::x}}"),
        ("{{user", "{{user"),
        ("{{ a {{user}} b", "{{ a Sam b"),
        ("}} {{user}} }}", "}} Sam }}"),
        ("{{/if}} {{/unknown}}", "{{/if}} {{/unknown}}"),
        # flags other than "#" and "/" are accepted and ignored
        ("{{!user}} {{ ? char }}", "Sam Mira"),
        # legacy angle names, any case; near misses are text
        ("<USER> meets <BOT>, also <CHAR>; <user> too", "Sam meets Mira, also Mira; Sam too"),
        ("<USERS> <b>bold</b> a < b > c", "<USERS> <b>bold</b> a < b > c"),
        ("<GROUP>|<CHARIFNOTGROUP>", "Mira|Mira"),
        ("{{getvar::<USER>}}{{setvar::Sam::s}}{{getvar::<USER>}}", "s"),
        ("", ""),
        ("no macros at all", "no macros at all"),
        ('JSON stays {"a": {"b": 1}}', 'JSON stays {"a": {"b": 1}}'),
    ],
)
def test_syntax(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{if personality}}P: {{personality}}{{/if}}", "P: calm"),
        ("{{if scenario}}S{{/if}}", ""),
        ("{{if scenario}}S{{else}}no scenario{{/if}}", "no scenario"),
        ("{{if !scenario}}none{{/if}}", "none"),
        ("{{ if ! personality }}none{{ else }}some{{ /if }}", "some"),
        # falsy: "", false, 0, off, no (any case, spaces ignored); anything else is true
        ("{{if 0}}t{{else}}f{{/if}}", "f"),
        ("{{if  OFF }}t{{else}}f{{/if}}", "f"),
        ("{{if no}}t{{else}}f{{/if}}", "f"),
        ("{{if False}}t{{else}}f{{/if}}", "f"),
        ("{{if yes}}t{{else}}f{{/if}}", "t"),
        ("{{if 00}}t{{else}}f{{/if}}", "t"),
        ("{{if unknownword}}t{{else}}f{{/if}}", "t"),
        # conditions from nested macros and variable shorthands
        ("{{setvar::x::1}}{{if {{getvar::x}}}}X{{/if}}", "X"),
        ("{{if {{getvar::nothing}}}}X{{else}}Y{{/if}}", "Y"),
        ("{{.flag = on}}{{if .flag}}on{{/if}}{{if !.flag}}off{{/if}}", "on"),
        ("{{if $missing}}t{{else}}f{{/if}}", "f"),
        ("{{if noop}}t{{else}}f{{/if}}", "f"),
        # inline form
        ("{{if personality::has one}}", "has one"),
        ("{{if::scenario::has one}}", ""),
        # nested ifs pair with their own closers; else belongs to the innermost open if
        (
            "{{if personality}}A{{if scenario}}B{{else}}C{{/if}}D{{else}}E{{/if}}",
            "ACD",
        ),
        ("{{if scenario}}A{{if personality}}B{{/if}}{{else}}E{{/if}}", "E"),
        # only the chosen branch runs
        (
            "{{if 0}}{{setvar::a::1}}{{else}}{{setvar::b::1}}{{/if}}{{hasvar::a}}{{hasvar::b}}",
            "falsetrue",
        ),
        # no closer: the opener stays as written
        ("{{if personality}}open", "{{if personality}}open"),
    ],
)
def test_if_else(text: str, expected: str) -> None:
    assert run(text) == expected


def test_block_bodies_are_trimmed_and_dedented() -> None:
    text = (
        "{{ if personality }}\n"
        "    # Heading\n"
        "      indented more\n"
        "  less\n"
        "    {{ personality }}\n"
        "{{ /if }}"
    )
    assert run(text) == "# Heading\n  indented more\nless\ncalm"


def test_hash_flag_keeps_whitespace() -> None:
    assert run("{{#if personality}}\n  p\n{{/if}}") == "\n  p\n"
    text = "{{# setvar code }}\n    x = 1\n{{ /setvar }}{{getvar::code}}"
    assert run(text) == "\n    x = 1\n"


def test_scoped_body_is_the_last_argument() -> None:
    text = (
        "{{setvar story}}\n  Born in a village,\n  grew up a scholar.\n{{/setvar}}"
        "[{{getvar::story}}]"
    )
    assert run(text) == "[Born in a village,\ngrew up a scholar.]"
    assert run("{{reverse}}\n  Hello World\n{{/reverse}}") == "dlroW olleH"
    assert run("a{{trim}}\n  b  \n{{/trim}}c") == "abc"
    # already complete: {{setvar::a::1}} takes no body, so its closer stays as text
    assert run("{{setvar::a::1}}x{{/setvar}}") == "x{{/setvar}}"


def test_else_outside_if_is_empty() -> None:
    assert run("a{{else}}b") == "ab"


def test_trim_eats_newlines_up_to_noop() -> None:
    assert run("keep\n\n{{trim}}\n\nthis") == "keepthis"
    assert run("x{{newline}}{{newline}}{{trim}}y") == "xy"
    assert run("a\n{{noop}}\n{{trim}}\nb") == "a\nb"  # noop stops the trim (ST #5673)
    assert run("a\r\n{{trim}}\r\nb") == "ab"


def test_noop_protects_whitespace_from_argument_trimming() -> None:
    assert run("{{setvar::v::{{noop}}  padded}}[{{getvar::v}}]") == "[  padded]"
    assert run("{{.v = x}}{{.v += {{noop}} | y}}{{.v}}") == "x | y"


def test_original_expands_once() -> None:
    assert run("{{original}} Then: {{original}}") == "Be kind. Then: "


def test_extra_values_are_case_insensitive_and_override() -> None:
    ctx = MacroContext(
        "Sam", "Mira", card=CARD, extra={"lastChatMessage": "The wind", "personality": "x"}
    )
    assert run("[Continue: {{lastchatmessage}}] {{personality}}", ctx) == "[Continue: The wind] x"


def test_values_are_never_expanded_again() -> None:
    sneaky = MacroContext(
        user="{{char}}<BOT>",
        char="{{user}}",
        original="{{original}}",
        persona="{{setvar::pwned::1}}",
        extra={"x": "{{user}}"},
    )
    out = run("{{user}}|{{char}}|{{original}}|{{persona}}|{{x}}|<USER>", sneaky)
    assert out == "{{char}}<BOT>|{{user}}|{{original}}|{{setvar::pwned::1}}|{{user}}|{{char}}<BOT>"
    # regex replacement syntax in a value is inserted literally too
    assert run("{{user}}", MacroContext(user=r"\1\g<0>", char="")) == r"\1\g<0>"
    # a variable holding macro text is data as well
    local: dict[str, str] = {"v": "{{user}}"}
    assert run("{{getvar::v}}", MacroContext("Sam", "Mira", local_vars=local)) == "{{user}}"


def test_card_text_is_a_template() -> None:
    # card fields are expanded where inserted (they are card text, not user text)
    assert run("{{description}}") == "Mira keeps the lighthouse."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the 1.12.6 spellings the reference lists
        ("{{random:x\\,y,x\\,y}}", "x,y"),  # a comma list; "\\," is a literal comma
        ("{{char_version}}|{{charJailbreak}}|{{idle_duration}}", "1.0|PHI|just now"),
        ("{{time_UTC+2}}|{{time_UTC-10}}", "4:07 PM|4:07 AM"),
        ('{{banned "delve"}}x', "x"),
        ("{{datetimeformat YYYY-MM-DD}}", "2024-03-05"),
        ("{{roll:d1}}|{{roll 1}}|{{roll:1}}", "1|1|1"),
        ("{{setvar::n::5}}{{addvar::n::2}}{{getvar::n}}|{{incvar::n}}|{{decvar::n}}", "7|8|7"),
        ("{{addvar::s::ab}}{{addvar::s::cd}}{{getvar::s}}", "abcd"),
    ],
)
def test_legacy_forms(text: str, expected: str) -> None:
    ctx = MacroContext(
        "Sam",
        "Mira",
        card=CardMacros(version="1.0", char_instruction="PHI"),
        now=datetime(2024, 3, 5, 14, 7, tzinfo=UTC),
        rng=random.Random(3),
    )
    assert expand(text, ctx) == expected


def test_banned_is_collected() -> None:
    result = expand_with('{{banned "delve"}}a{{banned::tapestry}}b', CTX)
    assert (result.text, result.banned) == ("ab", ("delve", "tapestry"))


def test_unclosed_and_stray_braces_stay_text() -> None:
    assert run("{{ {{ {{user}}") == "{{ {{ Sam"
    assert run("a } b }} c {") == "a } b }} c {"
