"""What a prune is asked to do, and reading the sizes and durations it is given.

`PruneOptions` (`--all`, `--keep-storage`, the grace period), `PruneError` for an
option that is not one, and the parsers and printer for the command line:
`parse_size`, `parse_duration`, `format_size`, as docker reads and prints them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from buildkit.errors import UserError

DEFAULT_GRACE = 3600.0


class PruneError(UserError):
    """A prune option that is not one (a size or a duration)."""


@dataclass(frozen=True)
class PruneOptions:
    """`all`: drop every cache record not used within `grace` (and cache mounts).
    `keep_storage`: drop least recently used records until the kept blobs fit
    in that many bytes (None: no limit; 0 with `all`)."""

    all: bool = False
    keep_storage: int | None = None
    grace: float = DEFAULT_GRACE


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(text: str) -> int:
    """`10GB`, `500MB`, `1.5g`, `0`: bytes, powers of 1024 as docker reads
    `--keep-storage` (`10GB` and `10GiB` are both 10 * 2**30)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise PruneError(f"invalid size {text!r}: expected a number with B, kB, MB, GB or TB")
    number, prefix = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgtp".index(prefix or " "))


def parse_duration(text: str) -> float:
    """`1h`, `30m`, `1h30m`, `0s`, `0`: seconds, as Go's time.ParseDuration (plus `d`)."""
    spec = text.strip()
    if spec == "0":
        return 0.0
    parts = _DURATION_RE.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise PruneError(f"invalid duration {text!r}: expected e.g. 1h, 30m, 1h30m or 0s")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def format_size(n: float) -> str:
    """Decimal units with four significant digits, as docker prints sizes: `12.35MB`."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    raise AssertionError("unreachable")
