"""Output clean-up: each step and SillyTavern's order, with exact strings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.cleanup import (
    CleanupOptions,
    clean_reply,
    cut_other_speakers,
    strip_partial_stop,
    trim_to_end_sentence,
)

MIRA = CleanupOptions(speaker="Mira", other_names=("Alex", "Bo"))


def test_a_leaked_line_of_another_speaker_ends_the_reply() -> None:
    text = "*She smiles.* Welcome.\nAlex: Thanks!\nMira: You're welcome."
    assert clean_reply(text, MIRA) == "*She smiles.* Welcome."
    assert clean_reply("Sure.\nBo: me too", MIRA) == "Sure."
    assert clean_reply("Alex: I speak first", MIRA) == ""  # as SillyTavern: nothing left
    assert clean_reply("I said Alex: hi", MIRA) == "I said Alex: hi"  # not at a line start


def test_earliest_leak_wins() -> None:
    assert cut_other_speakers("a\nBo: b\nAlex: c", ["Alex", "Bo"]) == "a"


def test_stop_strings_cut_and_partial_ones_are_stripped() -> None:
    options = CleanupOptions(stop_strings=("<|im_end|>", "\nUser:"))
    assert clean_reply("Hi there.<|im_end|>\nmore", options) == "Hi there."
    assert clean_reply("Hi there.<|im_e", options) == "Hi there."
    assert clean_reply("Hi there.\nUse", options) == "Hi there."
    assert strip_partial_stop("a <", ["<|im_end|>"]) == "a "
    assert strip_partial_stop("a<b", ["<|im_end|>"]) == "a<b"


def test_single_line() -> None:
    options = CleanupOptions(single_line=True)
    assert clean_reply("\n\nFirst line.\nSecond line.", options) == "First line."


def test_speaker_prefixes_are_removed() -> None:
    assert clean_reply("Mira: Hello.\nMira:   Again.", MIRA) == "Hello.\nAgain."
    keep = CleanupOptions(speaker="Mira", keep_speaker_prefix=True)
    assert clean_reply("Mira: Hello.", keep) == "Mira: Hello."


def test_instruct_sequences() -> None:
    options = CleanupOptions(
        cut_at=("<|endoftext|>", "<|im_start|>user"),
        remove_lines=("<|im_start|>assistant\n",),
    )
    text = "<|im_start|>assistant\nHello.<|im_start|>user\nHi"
    assert clean_reply(text, options) == "Hello."
    assert clean_reply("Done.<|endoftext|>junk", CleanupOptions()) == "Done."


def test_trailing_spaces_and_newline_collapse() -> None:
    text = "Line one.   \nLine two.\t\n\n\nLine three.  "
    assert clean_reply(text, CleanupOptions()) == "Line one.\nLine two.\n\n\nLine three."
    collapsed = CleanupOptions(collapse_newlines=True)
    assert clean_reply(text, collapsed) == "Line one.\nLine two.\nLine three."
    assert clean_reply("  x  ", CleanupOptions(trim_spaces=False)) == "  x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She nods. Then she", "She nods."),
        ('"Come in," she says. "The tea is', '"Come in," she says.'),
        ("*waves* and then", "*waves*"),
        ("Really?! I thought", "Really?!"),
        ("Done😊 and", "Done😊"),
        ("Done 😊 and", "Done"),  # SillyTavern drops a mark that follows a space, emoji too
        ("これは本です。そして", "これは本です。"),
        ("Dangling mark *", "Dangling mark"),  # a mark after a space is dropped with it
        ("no marks at all   ", "no marks at all"),
        ("", ""),
    ],
)
def test_trim_to_end_sentence(text: str, expected: str) -> None:
    assert trim_to_end_sentence(text) == expected


def test_trim_sentences_is_optional_and_skipped_for_partials() -> None:
    options = CleanupOptions(trim_sentences=True)
    assert clean_reply("One. Two", options) == "One."
    assert clean_reply("One. Two", options, partial=True) == "One. Two"
    assert clean_reply("One. Two", CleanupOptions()) == "One. Two"


def test_order_prefix_then_stops_then_regex_then_names() -> None:
    seen: list[str] = []

    def hook(text: str) -> str:
        seen.append(text)
        return text.replace("Alex", "\nAlex")  # a regex that creates a leak line

    options = CleanupOptions(
        reply_prefix="*smiles* ",
        stop_strings=("###",),
        speaker="Mira",
        other_names=("Alex",),
    )
    assert clean_reply("Hi Alex: how are you?###tail", options, regex_hook=hook) == "*smiles* Hi"
    assert seen == ["*smiles* Hi Alex: how are you?"]  # the hook saw the prefixed, stopped text


@settings(max_examples=300, deadline=timedelta(seconds=1))
@given(st.text(max_size=80), st.booleans(), st.booleans(), st.booleans())
def test_clean_reply_never_fails_and_trims(
    text: str, single: bool, sentences: bool, collapse: bool
) -> None:
    options = CleanupOptions(
        stop_strings=("</s>", "\nAlex:"),
        speaker="Mira",
        other_names=("Alex",),
        single_line=single,
        trim_sentences=sentences,
        collapse_newlines=collapse,
    )
    cleaned = clean_reply(text, options)
    assert cleaned == cleaned.strip()
    assert "</s>" not in cleaned or "</s>" not in text
