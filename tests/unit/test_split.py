"""split_text and split_parts: parts fit, only whitespace is lost, earlier parts stay put."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.delivery.split import Part, split_parts, split_text


def check_parts(text: str, limit: int, parts: list[Part]) -> None:
    """Every part fits; parts are the source in order, with only whitespace between them and
    only balanced-fence lines added; a blank text has no parts."""
    pos = 0
    open_before = None
    for index, part in enumerate(parts):
        assert len(part.text) <= limit
        gap = text[pos : part.start]
        assert not gap.strip(), f"non-whitespace dropped: {gap!r}"
        content = text[part.start : part.end]
        assert content.strip(), "a part with no content"
        assert not content[-1].isspace(), "trailing whitespace kept at a cut"
        prefix = f"{open_before.opener}\n" if open_before and open_before.balanced else ""
        last = index == len(parts) - 1
        suffix = (
            f"\n{part.fence.marker}" if part.fence and part.fence.balanced and not last else ""
        )
        assert part.text == prefix + content + suffix
        pos, open_before = part.end, part.fence
    assert not text[pos:].strip()
    if not text.strip():
        assert parts == []


def visible(parts: list[str]) -> str:
    return "".join("".join(part.split()) for part in parts)


def test_short_text_is_one_part_trimmed_at_the_ends() -> None:
    assert split_text("  \n  Hello there.\n\n", 100) == ["  Hello there."]
    assert split_text("Hello", 5) == ["Hello"]


def test_blank_text_has_no_parts() -> None:
    assert split_text("", 10) == []
    assert split_text(" \n\t\n ", 10) == []


def test_prefers_a_paragraph_break_to_a_later_line_or_sentence() -> None:
    text = "First paragraph, which is long.\n\nSecond one. It goes on.\nAnd on"
    assert split_text(text, 50) == [
        "First paragraph, which is long.",
        "Second one. It goes on.\nAnd on",
    ]


def test_then_a_line_break_then_a_sentence_end_then_a_word() -> None:
    lines = "a line of some words\nanother line of words here"
    assert split_text(lines, 30) == ["a line of some words", "another line of words here"]
    sentences = "One sentence here. Two sentences there and more"
    assert split_text(sentences, 30) == ["One sentence here.", "Two sentences there and more"]
    words = "nothing ends here so words decide the cut"
    assert split_text(words, 20) == ["nothing ends here so", "words decide the cut"]


def test_sentence_ends_after_closing_quotes_and_roleplay_actions() -> None:
    quoted = 'She said "Leave now." He stayed where he was.'
    assert split_text(quoted, 30)[0] == 'She said "Leave now."'
    action = "*She smiles softly.* Then she turns away from him"
    assert split_text(action, 30)[0] == "*She smiles softly.*"
    assert split_text("我们走吧。" * 8, 21)[0] == "我们走吧。" * 4


def test_structural_breaks_are_used_only_when_the_part_is_at_least_half_full() -> None:
    text = "Hi.\n\n" + "word " * 20
    parts = split_text(text, 40)
    assert parts[0].startswith("Hi.\n\nword")
    assert all(len(part) <= 40 for part in parts)


def test_hard_cut_as_a_last_resort() -> None:
    assert split_text("x" * 45, 20) == ["x" * 20, "x" * 20, "x" * 5]


def test_hard_cut_keeps_combining_marks_and_emoji_sequences_whole() -> None:
    accented = "e\u0301" * 15  # 30 code points, 15 visible letters
    for part in split_text(accented, 7):
        assert part[0] == "e" and part[-1] == "\u0301"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467" * 4  # 5 code points each
    assert all(
        part == "\U0001f468\u200d\U0001f469\u200d\U0001f467" for part in split_text(family, 6)
    )
    surrogates = "\ud83d\ude00" * 5  # a UTF-16 pair smuggled into str: never separated
    assert all(len(part) % 2 == 0 for part in split_text(surrogates, 3))


def test_indentation_of_the_first_line_after_a_cut_survives() -> None:
    text = "def f():\n    return 1\n\n    x = 2\n    y = 3"
    parts = split_text(text, 24)
    assert parts == ["def f():\n    return 1", "    x = 2\n    y = 3"]


def test_code_fences_are_closed_and_reopened_across_parts() -> None:
    body = "\n".join(f"print({i})" for i in range(12))
    text = f"Look:\n```python\n{body}\n```\nDone."
    parts = split_text(text, 60)
    assert len(parts) > 2
    for part in parts:
        fences = [line for line in part.split("\n") if line.startswith("```")]
        assert len(fences) % 2 == 0, part
        assert len(part) <= 60
    assert parts[1].startswith("```python\n")
    assert parts[-1].endswith("```\nDone.")


def test_a_fence_too_costly_to_balance_is_split_plainly() -> None:
    text = "```" + "i" * 30 + "\n" + "code " * 30
    parts = split_text(text, 40)
    assert parts[1].startswith("code")
    assert visible(parts) == visible([text])


def test_resuming_after_frozen_parts_gives_the_same_parts() -> None:
    text = ("A sentence that runs on. " * 4 + "\n```js\n" + "let x = 1;\n" * 9 + "```\n") * 3
    parts = split_parts(text, 80)
    assert len(parts) > 4
    for i, part in enumerate(parts[:-1]):
        assert split_parts(text, 80, start=part.end, fence=part.fence) == parts[i + 1 :]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_text("text", 0)


def test_parts_are_nearly_full_on_long_text() -> None:
    # the half-full rule is what keeps the split linear; it also means few messages
    text = ("Short line.\n" * 3 + "Some prose goes here, word after word. " * 20 + "\n\n") * 200
    parts = split_text(text, 2000)
    assert len(parts) <= 2 * len(text) // 2000 + 1
    assert visible(parts) == visible([text])


TOKENS = [
    "word", "longerword", " ", "  ", "\n", "\n\n", "\n  \n", "\t", ". ", "! ", "?", "…", '."',
    "*", "。", "```", "```py\n", "\n```\n", "~~~\n", "````\n", "e\u0301", "\u200d",
    "\U0001f44d\U0001f3fd", "\ud83d", "\ude00", "    ", "x" * 25,
]  # fmt: skip
texts = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=120).map("".join),
    st.text(max_size=400),
)


@given(text=texts, limit=st.integers(min_value=20, max_value=120))
def test_property_parts_fit_and_keep_all_content(text: str, limit: int) -> None:
    check_parts(text, limit, split_parts(text, limit))


@given(text=texts, limit=st.integers(min_value=20, max_value=120), cut=st.floats(0, 1))
def test_property_earlier_parts_do_not_change_as_the_text_grows(
    text: str, limit: int, cut: float
) -> None:
    frozen = split_text(text[: int(len(text) * cut)], limit)[:-1]
    assert split_text(text, limit)[: len(frozen)] == frozen
