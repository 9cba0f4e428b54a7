"""Reasoning blocks: split from finished replies and from streams cut anywhere."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.reasoning import (
    ReasoningSplitter,
    SplitDelta,
    SplitState,
    join_reasoning,
    split_reasoning,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>plan</think>Hello!", ("plan", "Hello!")),
        ("\n  <think>\n plan \n</think>\n\nHello! ", ("plan", "Hello!")),
        ("<think>a</think>b</think>c", ("a", "b</think>c")),  # the first suffix ends it
        ("<think></think>Hi", ("", "Hi")),
        ("Hi <think>x</think>", ("", "Hi <think>x</think>")),  # only at the start
        ("<think>never closed", ("", "<think>never closed")),
        ("  plain reply  ", ("", "  plain reply  ")),  # no block: untouched
        ("", ("", "")),
    ],
)
def test_split_reasoning(text: str, expected: tuple[str, str]) -> None:
    assert split_reasoning(text) == expected


def test_configurable_markers() -> None:
    deepseek = ("<think>\n", "\n</think>")
    assert split_reasoning("<think>\nhmm\n</think>\n\nYes.", *deepseek) == ("hmm", "Yes.")
    assert split_reasoning("[THINK]x[/THINK]y", "[THINK]", "[/THINK]") == ("x", "y")
    assert split_reasoning("<think>x</think>y", "", "</think>") == ("", "<think>x</think>y")


def stream(
    chunks: list[str], prefix: str = "<think>", suffix: str = "</think>"
) -> tuple[list[SplitDelta], ReasoningSplitter]:
    splitter = ReasoningSplitter(prefix, suffix)
    out = [splitter.feed(c) for c in chunks]
    out.append(splitter.finish())
    return out, splitter


def test_stream_with_markers_split_across_deltas() -> None:
    out, splitter = stream(["<th", "ink>The user ", "greets me.</th", "ink>\n\nHel", "lo!"])
    assert [(d.reply, d.reasoning) for d in out] == [
        ("", ""),  # could still be "<think>"
        ("", "Th"),  # the last 7 characters could be the start of "</think>"
        ("", "e user greets"),  # the trailing space waits: trimming may drop it
        ("Hel", " me."),
        ("lo!", ""),
        ("", ""),
    ]
    assert (splitter.reasoning, splitter.reply, splitter.unterminated) == (
        "The user greets me.",
        "Hello!",
        False,
    )


def test_stream_without_reasoning_passes_through_at_once() -> None:
    out, splitter = stream(["Hello", " there", "\n"])
    assert [d.reply for d in out] == ["Hello", " there", "\n", ""]
    assert splitter.state is SplitState.REPLY
    # a start that could still become the prefix waits, then flows
    out, _ = stream(["<", "b>bold"])
    assert [d.reply for d in out] == ["", "<b>bold", ""]


def test_unterminated_reasoning_stays_reasoning_like_sillytavern_streaming() -> None:
    _, splitter = stream(["<think>still thinking ", "when the tokens ran out  "])
    assert (splitter.reasoning, splitter.reply) == ("still thinking when the tokens ran out", "")
    assert splitter.unterminated
    _, waiting = stream(["<thi"])
    assert (waiting.reply, waiting.reasoning) == ("<thi", "")  # never opened: a plain reply


def test_join_reasoning() -> None:
    assert join_reasoning("plan", "Hi", prefix="<think>\n", suffix="\n</think>") == (
        "<think>\nplan\n</think>\n\nHi"
    )
    assert join_reasoning("", "Hi") == "Hi"
    assert join_reasoning("half", "", open_ended=True) == "<think>half"


_PIECES = st.sampled_from(
    ["<think>", "</think>", "<", "/", "think", ">", " ", "\n", "a", "b", "é", "<th", "nk>"]
)
_TEXTS = st.lists(_PIECES, max_size=14).map("".join) | st.text(max_size=40)
_MARKERS = st.sampled_from(
    [("<think>", "</think>"), ("<think>\n", "\n</think>"), ("[", "]"), (" <t>", "</t>")]
)


@settings(max_examples=500, deadline=timedelta(seconds=1))
@given(_TEXTS, st.data(), _MARKERS)
def test_any_chunking_gives_the_finished_split(
    text: str, data: st.DataObject, markers: tuple[str, str]
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    _, splitter = stream(chunks, *markers)
    reasoning, reply = split_reasoning(text, *markers)
    if splitter.unterminated:
        assert reply == text and splitter.reply == ""
        start = text.find(markers[0])
        assert splitter.reasoning == text[start + len(markers[0]) :].strip()
    else:
        assert (splitter.reasoning, splitter.reply) == (reasoning, reply)
