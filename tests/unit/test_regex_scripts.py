"""SillyTavern regex scripts: the file format, where each script runs, JavaScript pattern
semantics, and the time and size bounds on user-written patterns."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.card import Character
from bot.prompt.regex_scripts import (
    RegexPlacement,
    RegexScript,
    RegexScriptError,
    SubstituteRegex,
    apply_scripts,
    load_scripts,
    run_script,
    scripts_from_card,
    scripts_to_json,
)

AI = RegexPlacement.AI_OUTPUT
USER = RegexPlacement.USER_INPUT

# A script as SillyTavern 1.12 exports it (regex-<name>.json)
EXPORTED = {
    "id": "2b0c1e4d-0000-4000-8000-000000000001",
    "scriptName": "Strip OOC",
    "findRegex": "/\\(OOC:(.*?)\\)/gi",
    "replaceString": "[{{match}} → $1]",
    "trimStrings": [" "],
    "placement": [1, 2],
    "disabled": False,
    "markdownOnly": False,
    "promptOnly": False,
    "runOnEdit": True,
    "substituteRegex": False,
    "minDepth": None,
    "maxDepth": None,
}


def script(
    find: str, replace: str = "", placement: tuple[int, ...] = (2,), **more: Any
) -> RegexScript:
    obj = {
        "scriptName": "t",
        "findRegex": find,
        "replaceString": replace,
        "placement": list(placement),
        **more,
    }
    (loaded,) = load_scripts(obj, "t.json")
    return loaded


def run(find: str, replace: str, text: str, **more: Any) -> str:
    return run_script(script(find, replace, **more), text)


# -- the file format ------------------------------------------------------------------------------


def test_exported_script_loads_and_round_trips() -> None:
    (loaded,) = load_scripts(json.dumps(EXPORTED).encode(), "regex-strip.json")
    assert loaded.name == "Strip OOC"
    assert loaded.placement == frozenset({1, 2})
    assert (loaded.run_on_edit, loaded.substitute, loaded.min_depth) == (
        True,
        SubstituteRegex.NONE,
        None,
    )
    assert loaded.problem == ""
    assert loaded.to_dict() == {**EXPORTED, "substituteRegex": 0}
    assert load_scripts(scripts_to_json([loaded]), "again.json") == [loaded]
    text = "Hi (OOC: brb ) there (ooc:x)"
    # trim strings come off every inserted group, {{match}} included
    assert run_script(loaded, text) == "Hi [(OOC:brb) → brb] there [(ooc:x) → x]"


def test_card_scoped_scripts() -> None:
    card = Character(
        name="Mira", extensions={"regex_scripts": [EXPORTED, {**EXPORTED, "scriptName": "b"}]}
    )
    assert [s.name for s in scripts_from_card(card)] == ["Strip OOC", "b"]
    assert scripts_from_card(Character(name="Mira")) == []
    bad = Character(name="Mira", extensions={"regex_scripts": [{"findRegex": 5}]})
    with pytest.raises(
        RegexScriptError,
        match=r"^Mira: extensions\.regex_scripts: \[0\]: findRegex: expected text$",
    ):
        scripts_from_card(bad)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (5, "s.json: expected a script object or a list of them"),
        ([1], "s.json: [0]: expected a script object"),
        ([{"trimStrings": "x"}], "s.json: [0]: trimStrings: expected a list of text"),
        ([{"placement": ["2"]}], "s.json: [0]: placement: expected a list of numbers"),
        ([{"disabled": "no"}], "s.json: [0]: disabled: expected true or false"),
        ([{"substituteRegex": 3}], "s.json: [0]: substituteRegex: expected 0, 1, 2 or true/false"),
        ([{"minDepth": "deep"}], "s.json: [0]: minDepth: expected a whole number or null"),
        ([{"findRegex": "x" * 10_001}], "s.json: [0]: findRegex: over 10000 characters"),
    ],
)
def test_bad_fields_name_the_field(obj: Any, message: str) -> None:
    with pytest.raises(RegexScriptError) as info:
        load_scripts(obj, "s.json")
    assert info.value.message == message


def test_not_json() -> None:
    with pytest.raises(RegexScriptError, match=r"^s\.json: not valid JSON"):
        load_scripts(b"{", "s.json")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), (-1, None), ("3", 3), (2.0, 2)]
)
def test_depth_forms(value: Any, expected: int | None) -> None:
    assert script("/a/", minDepth=value).min_depth == expected


# -- where scripts run ----------------------------------------------------------------------------


def test_placement() -> None:
    s = script("/cat/g", "dog", placement=(USER,))
    assert apply_scripts("cat cat", [s], USER) == "dog dog"
    assert apply_scripts("cat cat", [s], AI) == "cat cat"


def test_scripts_run_in_order() -> None:
    scripts = [script("/a/g", "b"), script("/b/g", "c")]
    assert apply_scripts("ab", scripts, AI) == "cc"


@pytest.mark.parametrize(
    ("flags", "stored", "prompt", "display"),
    [
        ({}, "X", "X", "x"),  # changes the stored text; not re-run for display
        ({"markdownOnly": True}, "x", "x", "X"),
        ({"promptOnly": True}, "x", "X", "x"),
        ({"markdownOnly": True, "promptOnly": True}, "x", "X", "X"),
    ],
)
def test_ephemerality(flags: dict[str, bool], stored: str, prompt: str, display: str) -> None:
    s = [script("/x/", "X", **flags)]
    assert apply_scripts("x", s, AI) == stored
    assert apply_scripts("x", s, AI, for_prompt=True) == prompt
    assert apply_scripts("x", s, AI, for_display=True) == display


def test_depth_filter() -> None:
    s = [script("/x/", "X", minDepth=1, maxDepth=2)]
    assert [apply_scripts("x", s, AI, depth=d) for d in range(4)] == ["x", "X", "X", "x"]
    assert apply_scripts("x", s, AI) == "X"  # no depth (new output): no filter
    assert apply_scripts("x", s, AI, depth=-1) == "X"


def test_disabled_and_run_on_edit() -> None:
    assert apply_scripts("x", [script("/x/", "X", disabled=True)], AI) == "x"
    assert apply_scripts("x", [script("/x/", "X")], AI, on_edit=True) == "x"
    assert apply_scripts("x", [script("/x/", "X", runOnEdit=True)], AI, on_edit=True) == "X"


# -- replacement ----------------------------------------------------------------------------------


def test_groups_match_and_trim_strings() -> None:
    assert (
        run("/(\\w+)-(\\w+)/", "$2+$1 ($0) [{{MATCH}}]", "ab-cd ef-gh")
        == "cd+ab (ab-cd) [ab-cd] ef-gh"
    )
    assert run("/(a)(b)?/", "[$2][$5][$10]", "a") == "[][][]"  # missing groups are empty
    assert run("/<(.*?)>/g", "$1", "<a b> <c>", trimStrings=[" ", "c"]) == "ab "
    assert run("/x/", "$$ $& $'", "x") == "$$ $& $'"  # only $n means anything


def test_macros_expand_in_the_template_but_never_in_captured_text() -> None:
    macros = {"{{user}}": "Sam", "{{char}}": "Mira"}

    def expand(text: str) -> str:
        for key, value in macros.items():
            text = text.replace(key, value)
        return text

    s = script("/say (.*)/", "says: $1 ({{user}})", trimStrings=["{{char}}"])
    # the trim string is expanded (to "Mira"); the typed "{{char}}" and "{{user}}" stay text
    result = run_script(s, "I say Mira {{char}} hi {{user}}", macros=expand)
    assert result == "I says:  {{char}} hi {{user}} (Sam)"


def test_substitute_regex() -> None:
    def expand(text: str) -> str:
        return text.replace("{{char}}", "M.a")

    raw = script("/{{char}}/g", "X", substituteRegex=1)
    escaped = script("/{{char}}/g", "X", substituteRegex=2)
    assert run_script(raw, "Mia M.a", macros=expand) == "X X"
    assert run_script(escaped, "Mia M.a", macros=expand) == "Mia X"
    assert run_script(script("/{{char}}/", "X"), "{{char}}") == "X"  # JS: { is literal here


# -- JavaScript semantics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("find", "text", "expected"),
    [
        ("/a$/", "a\n", "a\n"),  # $ is the very end without m
        ("/a$/m", "a\nb", "X\nb"),
        ("/a.b/", "a\rb", "a\rb"),  # . stops at \r too
        ("/a.b/s", "a\rb", "X"),
        ("/\\d+/g", "٣3", "٣X"),  # \d is ASCII
        ("/\\w+/", "éa", "éX"),
        ("/\\bb/", "éb", "éX"),
        ("/[\\d]+/", "٣3", "٣X"),
        ("/a[^]b/", "a\nb", "X"),
        ("/a[]b/", "ab", "ab"),  # the empty class matches nothing
        ("/(?<q>['\"]).*?\\k<q>/", "say 'hi'", "say X"),
        ("/\\Z/", "Z", "X"),
        ("abc", "xabcx", "xXx"),  # no slashes: the whole text is the pattern
        ("/a/b/", "a/b", "X"),
        ("/abc/gd", "/abc/gd abc", "X abc"),  # unknown flag: the whole text is the pattern
        ("/ABC/i", "abc", "X"),
    ],
)
def test_javascript_semantics(find: str, text: str, expected: str) -> None:
    assert run(find, "X", text) == expected


def test_patterns_javascript_refuses_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    bad = script("/(unclosed/", "X")
    assert bad.problem.startswith("invalid pattern:")
    assert run_script(bad, "(unclosed") == "(unclosed"
    flagged = script("/a/x", "X")
    assert flagged.problem == "flag 'x' is not a JavaScript flag"
    assert any(
        "regex script t (t.json) will not run: flag 'x'" in r.getMessage() for r in caplog.records
    )


def test_empty_find_and_empty_text_do_nothing() -> None:
    assert run("", "X", "abc") == "abc"
    assert run("/a/", "X", "") == ""


# -- bounds ---------------------------------------------------------------------------------------


def test_catastrophic_pattern_times_out_and_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    evil = script("/(a|aa)+$/", "X")
    text = "a" * 60 + "b"
    started = time.perf_counter()
    assert apply_scripts(text, [evil, script("/b/", "B")], AI, timeout=0.05) == "a" * 60 + "B"
    assert time.perf_counter() - started < 2  # bounded by the timeout, not by the pattern
    assert "regex script t skipped: it ran over 0.05 s" in [r.getMessage() for r in caplog.records]


def test_output_that_grows_too_much_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert run("/(?:)/g", "x" * 2000, "y" * 1000) == "y" * 1000
    assert "its output ran over 1000000 chars" in caplog.records[-1].getMessage()


# -- robustness -----------------------------------------------------------------------------------

_PATTERN_BITS = st.sampled_from(
    [
        "(",
        ")",
        "[",
        "]",
        "^",
        "$",
        ".",
        "*",
        "+",
        "?",
        "{2}",
        "|",
        "\\",
        "\\k<a>",
        "(?<a>",
        "\\d",
        "[^]",
        "a",
        "/",
        "g",
        "i",
        "m",
        "s",
        "x",
    ]
)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(
    st.lists(_PATTERN_BITS, max_size=12).map("".join) | st.text(max_size=20),
    st.text(max_size=10),
    st.text(max_size=40),
)
def test_any_pattern_runs_or_is_skipped(find: str, replace: str, text: str) -> None:
    s = script(find, replace)
    result = run_script(s, text, timeout=0.1)
    assert isinstance(result, str)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_FIELDS = list(EXPORTED)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(st.lists(st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=6), max_size=3) | _JSON)
def test_arbitrary_script_files_raise_only_script_error(obj: Any) -> None:
    try:
        scripts = load_scripts(obj, "fuzz.json")
    except RegexScriptError as exc:
        assert exc.message.startswith("fuzz.json")
        return
    for s in scripts:
        apply_scripts("some text (OOC: x)", [s], AI, depth=1, timeout=0.1)
