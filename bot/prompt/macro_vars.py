"""Chat and global variables with SillyTavern's JavaScript arithmetic.

Values are stored as strings. Reading normalises numbers the way SillyTavern's
``getLocalVariable`` does (``Number(value)`` when the value is numeric, so ``"007"`` reads as
``7``); adding is numeric when both sides are numbers, pushes onto a JSON array, and
otherwise appends text. Numbers print as JavaScript prints them (``3``, ``2.5``, ``1e+21``).
"""

from __future__ import annotations

import json
import math
from collections.abc import MutableMapping
from decimal import Decimal

_NUMBER_CHARS = frozenset("0123456789.eE+-")
_RADIX = {"0x": 16, "0X": 16, "0o": 8, "0O": 8, "0b": 2, "0B": 2}


def js_number(text: str) -> float | None:
    """JavaScript's ``Number(text)``; ``None`` where it gives NaN."""
    s = text.strip()
    if not s:
        return 0.0
    if s in ("Infinity", "+Infinity", "-Infinity"):
        return -math.inf if s[0] == "-" else math.inf
    base = _RADIX.get(s[:2])
    if base is not None:
        try:
            return float(int(s[2:], base)) if s[2:].isalnum() else None
        except ValueError:
            return None
        except OverflowError:
            return math.inf
    # the character check keeps out what Python accepts and JavaScript does not
    # ("nan", "inf", "1_000"); float() itself is linear, unlike a backtracking regex
    if not _NUMBER_CHARS.issuperset(s):
        return None
    try:
        return float(s)
    except ValueError:
        return None


def js_str(value: float) -> str:
    """``String(number)`` in JavaScript."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # the shortest round-trip digits (what JavaScript prints too), as digits × 10^exp
    decimal = Decimal(repr(abs(value))).as_tuple()
    raw = "".join(str(d) for d in decimal.digits)
    digits = raw.rstrip("0")
    assert isinstance(decimal.exponent, int)
    n = len(raw) + decimal.exponent  # value = 0.digits × 10^n
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        body = (digits[0] + ("." + digits[1:] if k > 1 else "")) + ("e+" if e >= 0 else "e-")
        body += str(abs(e))
    return sign + body


def var_get(store: MutableMapping[str, str], name: str) -> str:
    """The value as ``{{getvar}}`` shows it ("" when unset)."""
    raw = store.get(name)
    if not raw:
        return ""
    number = js_number(raw)
    return raw if number is None else js_str(number)


def var_set(store: MutableMapping[str, str], name: str, value: str, limit: int) -> bool:
    """Store ``value``; ``False`` (and nothing stored) when it is longer than ``limit``."""
    if len(value) > limit:
        return False
    store[name] = value
    return True


def _current(store: MutableMapping[str, str], name: str) -> str | float:
    # getLocalVariable(name) || 0: unset, "" and numeric zero all become the number 0
    raw = store.get(name)
    if not raw:
        return 0.0
    number = js_number(raw)
    return raw if number is None else number


def var_add(
    store: MutableMapping[str, str], name: str, value: str | float, limit: int
) -> str | None:
    """``{{addvar}}``: the new value as text, or ``None`` when it would exceed ``limit``.

    A non-finite numeric result (``Infinity - Infinity``) leaves the variable unchanged and
    gives ``""``, as SillyTavern does.
    """
    current = _current(store, name)
    if isinstance(current, str) and current.lstrip().startswith("["):
        try:
            items = json.loads(current)
            if isinstance(items, list):
                # JSON.stringify(1) is "1", not "1.0"
                integral = isinstance(value, float) and value.is_integer()
                items.append(int(value) if integral else value)
                text = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
                return text if var_set(store, name, text, limit) else None
        except (ValueError, RecursionError):
            pass  # not a JSON array: fall through to text or number
    increment = value if isinstance(value, float) else js_number(value)
    if increment is None or isinstance(current, str):
        base = current if isinstance(current, str) else ("" if current == 0 else js_str(current))
        text = base + (value if isinstance(value, str) else js_str(value))
        return text if var_set(store, name, text, limit) else None
    total = current + increment
    if math.isnan(total):
        return ""
    text = js_str(total)
    return text if var_set(store, name, text, limit) else None
