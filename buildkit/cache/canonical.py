"""The one way the cache turns a document into a digest."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_digest", "canonical_json"]


def canonical_json(document: Any) -> bytes:
    """Sorted object keys, no whitespace, ASCII only (non-UTF-8 file names, kept
    as surrogate escapes, become `\\udcXX`), no NaN: the same bytes everywhere."""
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def canonical_digest(document: Any) -> str:
    """`sha256:<hex>` of the canonical JSON of `document` (JSON types only)."""
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
