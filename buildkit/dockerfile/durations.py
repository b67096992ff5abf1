"""Durations as Go's time.ParseDuration reads them (HEALTHCHECK flags)."""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ (micro sign)
    "\u03bcs": 1_000,  # μ (Greek mu)
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_UNIT = re.compile(r"[^0-9.]+")
_MAX = 2**63 - 1


def parse_go_duration(text: str) -> int:
    """Nanoseconds of `text` ("1m30s", "1.5h", "-2ms", "0"); ValueError if malformed.

    Grammar `[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`, units ns, us, µs, ms, s, m, h;
    a bare "0" needs no unit; results beyond int64 nanoseconds are errors.
    """
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if rest == "":
        raise ValueError(f"invalid duration {text!r}")
    total = Fraction(0)
    while rest:
        number = _NUMBER.match(rest)
        assert number is not None  # the pattern also matches ""
        whole, fraction = number.group(1), number.group(2) or ""
        if whole == "" and fraction == "":
            raise ValueError(f"invalid duration {text!r}")
        if len(whole) > 30 or len(fraction) > 30:
            raise ValueError(f"invalid duration {text!r}: out of range")
        rest = rest[number.end() :]
        unit = _UNIT.match(rest)
        if unit is None:
            raise ValueError(f"missing unit in duration {text!r}")
        if unit.group(0) not in _UNITS:
            raise ValueError(f"unknown unit {unit.group(0)!r} in duration {text!r}")
        rest = rest[unit.end() :]
        value = Fraction(int(whole or "0"))
        if fraction:
            value += Fraction(int(fraction), 10 ** len(fraction))
        total += value * _UNITS[unit.group(0)]
    nanoseconds = int(total)
    if nanoseconds > _MAX + (1 if negative else 0):
        raise ValueError(f"invalid duration {text!r}: out of range")
    return -nanoseconds if negative else nanoseconds
