"""Time for macros: a moment.js format subset, moment's ``humanize`` and time parsing.

Formats (English, as SillyTavern's default locale): ``YYYY YY Q MMMM MMM MM Mo M DDDD DDD
Do DD D dddd ddd dd d E HH H hh h kk k mm m ss s SSS A a ZZ Z X x W WW`` and the long forms
``LT`` (``h:mm A``), ``LTS``, ``L`` (``MM/DD/YYYY``), ``LL`` (``MMMM D, YYYY``), ``LLL``,
``LLLL``; ``[text]`` is literal, anything else is copied as is.

``humanize`` follows moment's thresholds (44 s → "a few seconds", 45 min → "an hour", 22 h →
"a day", 26 days → "a month", 11 months → "a year"), without the "in"/"ago" suffix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_LONG = {
    "LT": "h:mm A",
    "LTS": "h:mm:ss A",
    "L": "MM/DD/YYYY",
    "LL": "MMMM D, YYYY",
    "LLL": "MMMM D, YYYY h:mm A",
    "LLLL": "dddd, MMMM D, YYYY h:mm A",
}
# longest first, so "MMMM" is never read as four "M"
_TOKEN = re.compile(
    r"\[([^\]]*)\]|LTS|LT|LLLL|LLL|LL|L|YYYY|YY|Q|MMMM|MMM|MM|Mo|M|DDDD|DDD|Do|DD|D"
    r"|dddd|ddd|dd|d|E|HH|H|hh|h|kk|k|mm|m|ss|s|SSS|A|a|ZZ|Z|X|x|WW|W"
)
_SUFFIX = {1: "st", 2: "nd", 3: "rd"}
_UTC_SPEC = re.compile(r"UTC([+-]\d{1,6})")


def ordinal(n: int) -> str:
    """English ordinal: 1st, 2nd, 3rd, 4th, 11th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else _SUFFIX.get(n % 10, "th")
    return f"{n}{suffix}"


def _offset(dt: datetime, colon: bool) -> str:
    delta = dt.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


def _h12(dt: datetime) -> int:
    return dt.hour % 12 or 12


def _millis(dt: datetime) -> int:
    return math.floor(dt.timestamp() * 1000)


_FIELDS: dict[str, Callable[[datetime], str]] = {
    "YYYY": lambda dt: f"{dt.year:04d}",
    "YY": lambda dt: f"{dt.year % 100:02d}",
    "Q": lambda dt: str((dt.month - 1) // 3 + 1),
    "MMMM": lambda dt: _MONTHS[dt.month - 1],
    "MMM": lambda dt: _MONTHS[dt.month - 1][:3],
    "MM": lambda dt: f"{dt.month:02d}",
    "Mo": lambda dt: ordinal(dt.month),
    "M": lambda dt: str(dt.month),
    "DDDD": lambda dt: f"{dt.timetuple().tm_yday:03d}",
    "DDD": lambda dt: str(dt.timetuple().tm_yday),
    "Do": lambda dt: ordinal(dt.day),
    "DD": lambda dt: f"{dt.day:02d}",
    "D": lambda dt: str(dt.day),
    "dddd": lambda dt: _DAYS[dt.weekday()],
    "ddd": lambda dt: _DAYS[dt.weekday()][:3],
    "dd": lambda dt: _DAYS[dt.weekday()][:2],
    "d": lambda dt: str(dt.isoweekday() % 7),
    "E": lambda dt: str(dt.isoweekday()),
    "HH": lambda dt: f"{dt.hour:02d}",
    "H": lambda dt: str(dt.hour),
    "hh": lambda dt: f"{_h12(dt):02d}",
    "h": lambda dt: str(_h12(dt)),
    "kk": lambda dt: f"{dt.hour or 24:02d}",
    "k": lambda dt: str(dt.hour or 24),
    "mm": lambda dt: f"{dt.minute:02d}",
    "m": lambda dt: str(dt.minute),
    "ss": lambda dt: f"{dt.second:02d}",
    "s": lambda dt: str(dt.second),
    "SSS": lambda dt: f"{dt.microsecond // 1000:03d}",
    "A": lambda dt: "AM" if dt.hour < 12 else "PM",
    "a": lambda dt: "am" if dt.hour < 12 else "pm",
    "ZZ": lambda dt: _offset(dt, colon=False),
    "Z": lambda dt: _offset(dt, colon=True),
    "X": lambda dt: str(_millis(dt) // 1000),
    "x": lambda dt: str(_millis(dt)),
    "WW": lambda dt: f"{dt.isocalendar().week:02d}",
    "W": lambda dt: str(dt.isocalendar().week),
}


def format_moment(dt: datetime, fmt: str) -> str:
    """Format ``dt`` with a moment.js format string (the subset in the module docstring)."""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(fmt):
        out.append(fmt[pos : m.start()])
        tok = m.group(0)
        if m.group(1) is not None:
            out.append(m.group(1))
        elif tok in _LONG:
            out.append(format_moment(dt, _LONG[tok]))
        else:
            out.append(_FIELDS[tok](dt))
        pos = m.end()
    out.append(fmt[pos:])
    return "".join(out)


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # JavaScript's Math.round, not banker's rounding


def humanize(millis: float) -> str:
    """moment's ``duration.humanize()`` for a duration in milliseconds (sign ignored)."""
    ms = abs(millis)
    days_exact = ms / 86_400_000
    seconds, minutes, hours = _round(ms / 1000), _round(ms / 60_000), _round(ms / 3_600_000)
    days = _round(days_exact)
    months_exact = days_exact * 4800 / 146097
    months, years = _round(months_exact), _round(months_exact / 12)
    if seconds <= 44:
        return "a few seconds"
    if minutes <= 1:
        return "a minute"
    if minutes < 45:
        return f"{minutes} minutes"
    if hours <= 1:
        return "an hour"
    if hours < 22:
        return f"{hours} hours"
    if days <= 1:
        return "a day"
    if days < 26:
        return f"{days} days"
    if months <= 1:
        return "a month"
    if months < 11:
        return f"{months} months"
    if years <= 1:
        return "a year"
    return f"{years} years"


def at_utc_offset(now: datetime, spec: str) -> datetime | None:
    """``now`` at ``UTC±N`` (N in hours below 16, else minutes, as moment reads it)."""
    m = _UTC_SPEC.fullmatch(spec.strip())
    if m is None:
        return None
    value = int(m.group(1))
    minutes = value * 60 if abs(value) < 16 else value
    if abs(minutes) >= 24 * 60:
        return None
    return now.astimezone(timezone(timedelta(minutes=minutes)))


def parse_time(text: str, zone: tzinfo | None) -> datetime | None:
    """An ISO 8601 time, or ``{{date}}``'s ``LL`` / ``LLL`` forms; naive ones in ``zone``."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%B %d, %Y", "%B %d, %Y %I:%M %p"):
            try:
                parsed = datetime.strptime(text, fmt)  # noqa: DTZ007 - zone attached below
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone or UTC)
