"""What expanding a word gives: the results, and the error when it cannot.

`Expansion` (one word's value, its split words, and the names it used),
`PairsExpansion` (ENV/LABEL pairs expanded together) and `ExpansionError`,
whose message is BuildKit's.
"""

from __future__ import annotations

from dataclasses import dataclass


class ExpansionError(Exception):
    """A word that cannot be expanded. `str()` is BuildKit's message.

    BuildKit shows it as `failed to process "<word>": <message>`; `word` holds
    the word so the planner can do the same, adding the file and line.
    """

    def __init__(self, message: str, word: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.word = word


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one word.

    value:     the word expanded, quotes removed (ProcessWord).
    unmatched: names referenced but not set (for the UndefinedVar check).
    matched:   names referenced and set (which build args a plan uses).
    words:     the value split on unquoted whitespace (ProcessWords).
    """

    value: str
    unmatched: frozenset[str] = frozenset()
    matched: frozenset[str] = frozenset()
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class PairsExpansion:
    """`ENV`/`LABEL` pairs expanded, keys and values, all against one env."""

    pairs: tuple[tuple[str, str], ...]
    unmatched: frozenset[str] = frozenset()
    matched: frozenset[str] = frozenset()
