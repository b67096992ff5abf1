"""`RUN --mount=...` specs, read and checked as BuildKit reads them.

A spec is one CSV record (Go's encoding/csv: `"` quotes a whole field, `""`
inside it is a quote) of `key=value` fields, plus the bare words `ro`,
`readonly`, `rw`, `readwrite` and `required`. Values holding `$` are checked
by the planner once expanded; everything else is checked here.
"""

from __future__ import annotations

import re

from buildkit.dockerfile.flags import parse_bool

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_ALIASES = {
    "src": "source",
    "dst": "target",
    "destination": "target",
    "ro": "readonly",
    "rw": "readwrite",
}
_ALLOWED = {
    "bind": ("target", "source", "from", "readonly", "readwrite"),
    "cache": (
        "id",
        "target",
        "readonly",
        "readwrite",
        "sharing",
        "from",
        "source",
        "mode",
        "uid",
        "gid",
    ),
    "tmpfs": ("target", "size"),
    # BuildKit takes `source` for a secret as another spelling of its id.
    "secret": ("id", "source", "target", "env", "required", "mode", "uid", "gid"),
    "ssh": ("id", "target", "required", "mode", "uid", "gid"),
}
_KNOWN_KEYS = frozenset(key for keys in _ALLOWED.values() for key in keys)
_BARE_WORDS = ("readonly", "readwrite", "required")
_SIZE = re.compile(r"\d{1,30}(\.\d{1,30})* ?[kKmMgGtTpP]?[iI]?[bB]?")


class MountSpecError(ValueError):
    """A `--mount` value that is not a valid mount."""


def split_csv(text: str) -> list[str]:
    """The fields of one CSV record, as Go's encoding/csv reads them."""
    if text == "":
        raise MountSpecError("empty mount spec")
    fields: list[str] = []
    pos, n = 0, len(text)
    while True:
        if pos < n and text[pos] == '"':
            pos += 1
            parts: list[str] = []
            while True:
                end = text.find('"', pos)
                if end < 0:
                    raise MountSpecError('extraneous or missing " in quoted-field')
                parts.append(text[pos:end])
                pos = end + 1
                if pos < n and text[pos] == '"':
                    parts.append('"')
                    pos += 1
                    continue
                break
            if pos < n and text[pos] != ",":
                raise MountSpecError('extraneous or missing " in quoted-field')
            fields.append("".join(parts))
        else:
            end = text.find(",", pos)
            end = n if end < 0 else end
            field = text[pos:end]
            if '"' in field:
                raise MountSpecError('bare " in non-quoted-field')
            fields.append(field)
            pos = end
        if pos >= n:
            return fields
        pos += 1  # the comma
        if pos == n:
            fields.append("")
            return fields


def parse_mount(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """(type, options) of one `--mount` value: keys lower-cased, aliases
    resolved, bare words given a `true` value, the last of a repeated key kept."""
    fields = split_csv(spec)
    mount_type = "bind"
    options: dict[str, str] = {}
    for field in fields:
        raw_key, has_value, value = field.partition("=")
        key = raw_key.lower()
        if key == "type":
            if not has_value:
                raise MountSpecError("invalid field 'type' must be a key=value pair")
            mount_type = value.lower()
            if "$" not in value and mount_type not in MOUNT_TYPES:
                raise MountSpecError(
                    f"unsupported mount type {value!r} (expected bind, cache, tmpfs, secret or ssh)"
                )
            continue
        key = _ALIASES.get(key, key)
        if not has_value:
            if key not in _BARE_WORDS:
                raise MountSpecError(f"invalid field {field!r} must be a key=value pair")
            value = "true"
        elif key not in _KNOWN_KEYS:
            raise MountSpecError(f"unexpected key {raw_key!r} in {field!r}")
        options.pop(key, None)
        options[key] = value
    if mount_type in _ALLOWED:
        _check(mount_type, options)
    return mount_type, list(options.items())


def _check(mount_type: str, options: dict[str, str]) -> None:
    allowed = _ALLOWED[mount_type]
    for key, value in options.items():
        if key not in allowed:
            raise MountSpecError(
                f"unexpected key {key!r} for mount type {mount_type!r} "
                f"(it takes {', '.join(allowed)})"
            )
        if "$" in value:
            if key == "from" and value.index("$") != len(value) - 1:
                raise MountSpecError(
                    "'from' doesn't support variable expansion, define alias stage instead"
                )
            continue
        _check_value(key, value)
    if mount_type == "secret":
        if not ({"id", "source", "target"} & options.keys()):
            raise MountSpecError("invalid secret mount: one of id, source or target is required")
        if "id" in options and "source" in options:
            raise MountSpecError("both source and id can't be set")


def _check_value(key: str, value: str) -> None:
    if key in ("readonly", "readwrite", "required") and parse_bool(value) is None:
        raise MountSpecError(f"invalid value for {key}: {value!r} (expected true or false)")
    if key == "sharing" and value.lower() not in ("shared", "private", "locked"):
        raise MountSpecError(
            f"unsupported sharing value {value!r} (expected shared, private or locked)"
        )
    if key == "mode" and not _fits_uint32(value, "01234567", 8):
        raise MountSpecError(f"invalid value {value!r} for mode (expected an octal number)")
    if key in ("uid", "gid") and not _fits_uint32(value, "0123456789", 10):
        raise MountSpecError(f"invalid value {value!r} for {key} (expected a number)")
    if key == "size" and not _SIZE.fullmatch(value):
        raise MountSpecError(f"invalid value for size: {value!r} (expected e.g. 64m or 1g)")


def _fits_uint32(value: str, digits: str, base: int) -> bool:
    if value == "" or any(ch not in digits for ch in value):
        return False
    stripped = value.lstrip("0") or "0"
    return len(stripped) <= 12 and int(stripped, base) <= 0xFFFFFFFF
