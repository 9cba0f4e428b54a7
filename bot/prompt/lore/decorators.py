"""CCv3 lorebook decorators: ``@@name value`` lines at the head of an entry's content.

SillyTavern strips every leading ``@@`` line but only acts on ``@@activate`` and
``@@dont_activate``. We apply the decorators of the CCv3 spec that make sense for a chat
(the ``instruct_*``/``reverse_*`` ones are for non-chat contexts, which the spec says to
ignore in a chat), with its fallback rule: a ``@@@name`` line is used only when the decorator
just before it was unknown or ignored. Values that are not valid make a decorator ignored.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.prompt.lore.model import ROLE_NAMES, Decorator


def _is_int(value: str) -> bool:
    text = value.strip()
    return text.lstrip("+-").isdigit() and len(text) <= 9


def _no_value(value: str) -> bool:
    return True


def _any_text(value: str) -> bool:
    return bool(value.strip())


# name -> whether a value is valid; decorators not listed here are unknown or ignored
_APPLIED: dict[str, Callable[[str], bool]] = {
    "activate": _no_value,
    "dont_activate": _no_value,
    "keep_activate_after_match": _no_value,
    "dont_activate_after_match": _no_value,
    "ignore_on_max_context": _no_value,
    "depth": _is_int,
    "scan_depth": _is_int,
    "activate_only_after": _is_int,
    "activate_only_every": _is_int,
    "is_greeting": _is_int,
    "role": lambda v: v.strip().lower() in ROLE_NAMES,
    "position": lambda v: v.strip().lower() in ("before_desc", "after_desc"),
    "additional_keys": _any_text,
    "exclude_keys": _any_text,
}


def parse_decorators(content: str) -> tuple[tuple[Decorator, ...], str]:
    """Split leading decorator lines off ``content``: (applied decorators, the rest).

    Like ST, only content that starts with ``@@`` has decorators, and the stripped lines
    end at the first line that does not start with ``@@``. Content made only of decorators
    becomes empty (ST would leave the text in the prompt as is).
    """
    if not content.startswith("@@"):
        return (), content
    lines = content.split("\n")
    found: list[Decorator] = []
    fallback_open = False  # the previous decorator was unknown or ignored
    rest = ""
    for i, line in enumerate(lines):
        if not line.startswith("@@"):
            rest = "\n".join(lines[i:])
            break
        if line.startswith("@@@"):
            if not fallback_open:
                continue
            line = line[1:]
        name, _, value = line[2:].partition(" ")
        name = name.strip().lower()
        value = value.strip()
        check = _APPLIED.get(name)
        if check is not None and check(value):
            found.append(Decorator(name, value))
            fallback_open = False
        else:
            fallback_open = True
    return tuple(found), rest


def first(decorators: tuple[Decorator, ...], name: str) -> str | None:
    """The value of the first decorator called ``name`` (the CCv3 rule for repeats)."""
    for d in decorators:
        if d.name == name:
            return d.value
    return None


def split_keys(value: str) -> tuple[str, ...]:
    """``@@additional_keys a, b`` → ("a", "b")."""
    return tuple(k.strip() for k in value.split(",") if k.strip())
