"""`COPY --chmod` values: octal (`755`, `0644`) or symbolic as chmod(1) (`u+x`, `go-w`, `a=rX`).

`parse_chmod(text)` returns a function from (current permission bits, is it a
directory) to the new bits. Octal is an absolute mode, the same for files and
directories. Symbolic clauses are applied in order to each entry's own mode,
so `X` (execute only for directories and for files that already have an
execute bit) works as BuildKit documents it: `u=rwX,go=rX` makes directories
0755 and files 0644, keeping the execute bits of executables.

The grammar is chmod(1)'s: clauses separated by `,`, each `[ugoa]*` then one
or more `[-+=]` each followed by `[rwxXst]*` or by one of `u`, `g`, `o` (copy
that class's bits). With no `ugoa` the clause applies to all, without a umask
(BuildKit applies none). Pure: no filesystem.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from buildkit.errors import UserError

__all__ = ["ChmodError", "ModeFn", "parse_chmod"]

ModeFn = Callable[[int, bool], int]

_OCTAL = re.compile(r"(?:0o)?[0-7]{1,4}\Z")
_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)\Z")
_ACTION = re.compile(r"([-+=])([ugo]|[rwxXst]*)")

_WHO_BITS = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_SHIFT = {"u": 6, "g": 3, "o": 0}


class ChmodError(UserError):
    """A `--chmod` value that is neither octal nor a chmod(1) symbolic mode."""


def parse_chmod(text: str) -> ModeFn:
    if _OCTAL.match(text):
        value = int(text.removeprefix("0o"), 8)
        return lambda _mode, _is_dir: value
    clauses = []
    for clause in text.split(","):
        m = _CLAUSE.match(clause)
        if not m:
            raise ChmodError(
                f"invalid chmod parameter {text!r}: expected an octal mode (0 to 7777) "
                "or a symbolic mode like u+x,go-w"
            )
        who = m.group(1).replace("a", "ugo") or "ugo"
        clauses.append((set(who), _ACTION.findall(m.group(2))))

    def apply(mode: int, is_dir: bool) -> int:
        mode &= 0o7777
        for who, actions in clauses:
            mask = 0
            for w in who:
                mask |= _WHO_BITS[w]
            for op, perms in actions:
                bits = _bits(perms, who, mode, is_dir)
                if op == "+":
                    mode |= bits & mask
                elif op == "-":
                    mode &= ~(bits & mask)
                else:
                    mode = (mode & ~mask) | (bits & mask)
        return mode

    return apply


def _bits(perms: str, who: set[str], mode: int, is_dir: bool) -> int:
    """The bits `perms` stands for, spread over all classes (masked by `who` later)."""
    if perms in _SHIFT:
        triple = (mode >> _SHIFT[perms]) & 0o7
        return triple << 6 | triple << 3 | triple
    bits = 0
    for p in perms:
        if p == "r":
            bits |= 0o444
        elif p == "w":
            bits |= 0o222
        elif p == "x" or (p == "X" and (is_dir or mode & 0o111)):
            bits |= 0o111
        elif p == "s":
            bits |= (0o4000 if "u" in who else 0) | (0o2000 if "g" in who else 0)
        elif p == "t":
            bits |= 0o1000
    return bits
