"""Users and groups of an image: `USER` and `--chown` values against its root.

Two rules, because Docker has two:

* `resolve_user(root, spec)` is `USER` for RUN (runc's `GetExecUser`, which
  BuildKit uses): `name` or `uid`, optionally `:group` or `:gid`. A uid found
  in /etc/passwd takes that entry's primary group, a uid not found there gets
  group 0; a name must be found. Without an explicit group, the supplementary
  groups are every /etc/group entry listing the user's name.
* `resolve_chown(root, spec)` is `COPY/ADD --chown` (BuildKit's file op):
  a bare uid means gid = uid; a bare name takes its primary group from
  /etc/passwd. No supplementary groups.

Numeric ids need no lookup, so a missing /etc/passwd is fine with them. Names
are looked up in the image's own /etc/passwd and /etc/group, read through
`buildkit.fsutil` so a symlinked /etc/passwd is resolved inside the root and a
device node or fifo there reads as no file.

An unknown name is `UnknownUserError`, a UserError: the Dockerfile asked for a
user the image does not have. It is not a ContextError (the build context is
not involved) and not a DockerfileError (this module knows no line; the engine
adds it when it reports the step).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from buildkit.errors import UserError
from buildkit.fsutil import open_regular_in_root

__all__ = [
    "GroupEntry",
    "PasswdEntry",
    "UnknownUserError",
    "parse_group",
    "parse_passwd",
    "resolve_chown",
    "resolve_user",
]

PASSWD = "/etc/passwd"
GROUP = "/etc/group"
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to chown(2)


class UnknownUserError(UserError):
    """A user or group name the image's /etc/passwd or /etc/group does not have,
    or a user spec that is not one."""


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str = ""
    shell: str = ""


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...] = ()


def _parse_id(text: str) -> int | None:
    """A decimal id as runc accepts it, or None when `text` is a name."""
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX_ID else None


def _records(text: str, min_fields: int) -> Iterator[list[str]]:
    """The `:`-separated fields of each line of a passwd-style file; blank
    lines, comments and lines with fewer than `min_fields` fields are skipped."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            yield fields


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Entries of an /etc/passwd file; malformed lines are skipped, as runc does."""
    entries = []
    for fields in _records(text, 4):
        uid, gid = _parse_id(fields[2]), _parse_id(fields[3])
        if uid is None or gid is None:
            continue
        home = fields[5] if len(fields) > 5 else ""
        shell = fields[6] if len(fields) > 6 else ""
        entries.append(PasswdEntry(fields[0], uid, gid, home, shell))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Entries of an /etc/group file; malformed lines are skipped."""
    entries = []
    for fields in _records(text, 3):
        gid = _parse_id(fields[2])
        if gid is None:
            continue
        members = tuple(m for m in (fields[3].split(",") if len(fields) > 3 else []) if m)
        entries.append(GroupEntry(fields[0], gid, members))
    return entries


def _read(root: Path | str, path: str) -> str | None:
    data = open_regular_in_root(root, path)
    return None if data is None else data.decode("utf-8", "replace")


def _split(spec: str) -> tuple[str, str | None]:
    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise UnknownUserError(f"invalid user {spec!r}: expected user, user:group or uid:gid")
    return user, group if sep else None


def _find_user(user: str, passwd: list[PasswdEntry] | None) -> PasswdEntry:
    for entry in passwd or ():
        if entry.name == user:
            return entry
    where = "no matching entries in" if passwd is not None else "no"
    raise UnknownUserError(f"unable to find user {user}: {where} passwd file {PASSWD}")


def _find_group(group: str, groups: list[GroupEntry] | None) -> GroupEntry:
    for entry in groups or ():
        if entry.name == group:
            return entry
    where = "no matching entries in" if groups is not None else "no"
    raise UnknownUserError(f"unable to find group {group}: {where} group file {GROUP}")


def _passwd(root: Path | str) -> list[PasswdEntry] | None:
    text = _read(root, PASSWD)
    return None if text is None else parse_passwd(text)


def _groups(root: Path | str) -> list[GroupEntry] | None:
    text = _read(root, GROUP)
    return None if text is None else parse_group(text)


def resolve_user(root: Path | str, spec: str) -> tuple[int, int, tuple[int, ...]]:
    """`(uid, gid, supplementary gids)` for a `USER` value, as RUN runs it.

    An empty spec is root. Supplementary groups come from /etc/group (every
    group listing the user's name) and only when no group is given.
    """
    user, group = _split(spec or "0")
    passwd = _passwd(root)
    uid_arg = _parse_id(user)
    if uid_arg is not None:
        known = next((e for e in passwd or () if e.uid == uid_arg), None)
        uid, gid, name = uid_arg, (known.gid if known else 0), (known.name if known else None)
    else:
        found = _find_user(user, passwd)
        uid, gid, name = found.uid, found.gid, found.name
    if group is not None:
        gid_arg = _parse_id(group)
        gid = gid_arg if gid_arg is not None else _find_group(group, _groups(root)).gid
        return uid, gid, ()
    extra: list[int] = []
    if name is not None:
        for group_entry in _groups(root) or ():
            if name in group_entry.members and group_entry.gid not in extra:
                extra.append(group_entry.gid)
    return uid, gid, tuple(extra)


def resolve_chown(root: Path | str, spec: str) -> tuple[int, int]:
    """`(uid, gid)` for a `--chown` value, as BuildKit's file op resolves it."""
    user, group = _split(spec)
    uid_arg = _parse_id(user)
    if uid_arg is not None:
        uid, gid = uid_arg, uid_arg
    else:
        entry = _find_user(user, _passwd(root))
        uid, gid = entry.uid, entry.gid
    if group is not None:
        gid_arg = _parse_id(group)
        gid = gid_arg if gid_arg is not None else _find_group(group, _groups(root)).gid
    return uid, gid
