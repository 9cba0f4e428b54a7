"""Clean-up of a generated reply, in SillyTavern's order (``cleanUpMessage``):

1. the reply prefix ("Start Reply With") goes in front;
2. the reply is cut at the first stop string (for backends that ignore them), and a stop
   string that the reply ends in the middle of is removed (it may be the start of one);
3. regex scripts run (a hook: the caller binds :func:`~bot.prompt.regex_scripts.apply_scripts`);
4. optionally, runs of newlines collapse to one;
5. trailing spaces go from every line;
6. a line that starts with another speaker's ``Name:`` ends the reply (the model went on to
   write for them), and so do the cut-at strings (``<|endoftext|>``, the instruct stop and
   input sequences); output-sequence lines that leaked in are removed;
7. the speaker's own ``Name:`` is removed where a line starts with it;
8. optionally, an incomplete last sentence is trimmed (never on a streaming partial);
9. the ends are trimmed.

Pure functions: text and options in, text out. Markdown repair (SillyTavern's step between 7
and 8) belongs to the display, not here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import regex

# SillyTavern's trimToEndSentence marks; an emoji also ends a sentence
_SENTENCE_END = frozenset('.!?*")}`]$。！？”）】’」_')
_EMOJI = regex.compile(r"\p{Emoji_Presentation}|\p{Extended_Pictographic}")
_TRAILING_SPACES = re.compile(r"[^\S\r\n]+$", re.MULTILINE)
_NEWLINES = re.compile(r"\n+")


@dataclass(frozen=True, slots=True)
class CleanupOptions:
    """What to clean. ``speaker`` is whose reply this is (the character; the user when
    impersonating); ``other_names`` are everyone else who may speak (the user first, then
    other group members)."""

    stop_strings: tuple[str, ...] = ()
    speaker: str = ""
    other_names: tuple[str, ...] = ()
    keep_speaker_prefix: bool = False  # SillyTavern's "Show {{char}}:" (allow_name2_display)
    cut_at: tuple[str, ...] = ("<|endoftext|>",)
    remove_lines: tuple[str, ...] = ()  # instruct output sequences: their lines are removed
    reply_prefix: str = ""
    collapse_newlines: bool = False
    single_line: bool = False
    trim_sentences: bool = False
    trim_spaces: bool = True


def clean_reply(
    text: str,
    options: CleanupOptions,
    *,
    regex_hook: Callable[[str], str] | None = None,
    partial: bool = False,
) -> str:
    """``text`` cleaned as above; ``partial`` for a streaming snapshot (no sentence trim)."""
    text = options.reply_prefix + text
    stops = options.stop_strings
    if options.single_line:
        text = text.lstrip()  # a reply that opens with a newline would otherwise be empty
        stops = ("\n", *stops)
    text = strip_partial_stop(cut_at_first(text, stops), stops)
    if regex_hook is not None:
        text = regex_hook(text)
    if options.collapse_newlines:
        text = _NEWLINES.sub("\n", text)
    text = _TRAILING_SPACES.sub("", text)
    text = cut_other_speakers(text, options.other_names)
    text = cut_at_first(text, options.cut_at)
    text = remove_sequence_lines(text, options.remove_lines)
    if options.speaker and not options.keep_speaker_prefix:
        text = remove_name_prefixes(text, options.speaker)
    if options.trim_sentences and not partial:
        text = trim_to_end_sentence(text)
    return text.strip() if options.trim_spaces else text


def cut_at_first(text: str, marks: Iterable[str]) -> str:
    """``text`` up to the earliest occurrence of any non-empty mark."""
    ends = [at for mark in marks if mark and (at := text.find(mark)) >= 0]
    return text[: min(ends)] if ends else text


def strip_partial_stop(text: str, stops: Iterable[str]) -> str:
    """Remove a stop string's beginning (or all of it) from the end of ``text``: while
    streaming, it may be the first half of a stop string that is still arriving."""
    for stop in stops:
        for size in range(len(stop), 0, -1):
            if text.endswith(stop[:size]):
                text = text[:-size]
                break
    return text


def cut_other_speakers(text: str, names: Iterable[str]) -> str:
    """Cut where a line (or the reply) starts with another speaker's ``Name:``."""
    ends = []
    for name in names:
        if not name:
            continue
        if text.startswith(f"{name}:"):
            return ""
        at = text.find(f"\n{name}:")
        if at >= 0:
            ends.append(at)
    return text[: min(ends)] if ends else text


def remove_sequence_lines(text: str, sequences: Iterable[str]) -> str:
    """Remove every non-blank line of each sequence wherever it appears (a leaked
    ``<|im_start|>assistant`` and the like)."""
    for sequence in sequences:
        for line in sequence.split("\n"):
            if line.strip():
                text = text.replace(line, "")
    return text


def remove_name_prefixes(text: str, name: str) -> str:
    """Drop ``Name:`` (and the whitespace after it) where the text or a line starts with it."""
    return re.sub(rf"(^|\n){re.escape(name)}:\s*", r"\1", text)


def trim_to_end_sentence(text: str) -> str:
    """Cut after the last sentence-ending mark or emoji. A mark that follows whitespace is
    dropped with it (a dangling ``*`` after a space is not an ending); with no mark at all,
    only trailing whitespace goes."""
    for at in range(len(text) - 1, -1, -1):
        char = text[at]
        if char in _SENTENCE_END or _EMOJI.match(char):
            end = at if at > 0 and text[at - 1].isspace() else at + 1
            return text[:end].rstrip()
    return text.rstrip()
