"""How image objects become JSON and are read back: the shared helpers.

`canonical_json` and `format_created` write the fixed serialisation described
in `buildkit.image`; the private `_obj`, `_str`, `_int`, ... readers take one
field out of decoded JSON and raise `ManifestInvalid` naming it when it has the
wrong type. Used by the descriptor, configuration and manifest modules beside
this one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from buildkit.digest import Digest, InvalidDigest
from buildkit.errors import RegistryError


class ManifestInvalid(RegistryError):
    """JSON that is not the image object it claims to be."""

    retryable = False


# ------------------------------------------------------------ serialisation


def canonical_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON, keys in the order given (see the module docstring)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def format_created(when: int | float | datetime) -> str:
    """RFC 3339 in UTC as Go formats a time.Time: `2024-01-02T03:04:05Z`,
    fractional seconds only when there are some (trailing zeros trimmed)."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    when = when.astimezone(UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def _sorted_map(m: Mapping[str, str]) -> dict[str, str]:
    return {k: m[k] for k in sorted(m)}


def _set_map(keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {k: {} for k in sorted(keys)}


# ------------------------------------------------------------ parsing helpers


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where}: expected a JSON object")
    return value


def _str(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise ManifestInvalid(f"{where}.{key}: missing")
        return ""
    if not isinstance(value, str):
        raise ManifestInvalid(f"{where}.{key}: expected a string")
    return value


def _int(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> int:
    value = obj.get(key)
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise ManifestInvalid(f"{where}.{key}: expected an integer")
    return value


def _strs(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestInvalid(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def _str_map(obj: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ManifestInvalid(f"{where}.{key}: expected an object of strings")
    return dict(value)


def _digest(obj: dict[str, Any], key: str, where: str) -> Digest:
    try:
        return Digest(_str(obj, key, where, required=True))
    except InvalidDigest as exc:
        raise ManifestInvalid(f"{where}.{key}: {exc}") from None


def _load(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        return _obj(json.loads(data), what)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"{what}: not valid JSON: {exc}") from None
