"""buildkit.users: USER and --chown against a real image root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from buildkit.errors import UserError
from buildkit.users import (
    GroupEntry,
    PasswdEntry,
    UnknownUserError,
    parse_group,
    parse_passwd,
    resolve_chown,
    resolve_user,
)

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1::/:/sbin/nologin
# a comment
not a valid line
badid:x:abc:1::/:/bin/sh
alice:x:1000:1000::/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
"""

GROUP = """\
root:x:0:root
users:x:100:alice,bob
wheel:x:10:root,alice
alice:x:1000:
docker:x:999:bob
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


def test_parse_passwd_skips_malformed_lines() -> None:
    assert parse_passwd(PASSWD) == [
        PasswdEntry("root", 0, 0, "/root", "/bin/sh"),
        PasswdEntry("daemon", 1, 1, "/", "/sbin/nologin"),
        PasswdEntry("alice", 1000, 1000, "/home/alice", "/bin/sh"),
        PasswdEntry("bob", 1001, 100, "/home/bob", "/bin/sh"),
    ]


def test_parse_group() -> None:
    assert parse_group(GROUP) == [
        GroupEntry("root", 0, ("root",)),
        GroupEntry("users", 100, ("alice", "bob")),
        GroupEntry("wheel", 10, ("root", "alice")),
        GroupEntry("alice", 1000, ()),
        GroupEntry("docker", 999, ("bob",)),
    ]


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("", (0, 0, (0, 10))),  # root, and the groups listing root
        ("root", (0, 0, (0, 10))),
        ("alice", (1000, 1000, (100, 10))),  # primary group from passwd
        ("bob", (1001, 100, (100, 999))),
        ("1000", (1000, 1000, (100, 10))),  # a known uid is that user
        ("5000", (5000, 0, ())),  # an unknown uid gets group 0
        ("alice:docker", (1000, 999, ())),  # an explicit group: no supplementary groups
        ("alice:42", (1000, 42, ())),
        ("5000:5001", (5000, 5001, ())),
        ("1001:users", (1001, 100, ())),
    ],
)
def test_resolve_user(root: Path, spec: str, want: tuple[int, int, tuple[int, ...]]) -> None:
    assert resolve_user(root, spec) == want


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("alice", (1000, 1000)),
        ("bob", (1001, 100)),  # a name alone takes its primary group
        ("1001", (1001, 1001)),  # a uid alone: gid = uid (not bob's group)
        ("55:users", (55, 100)),
        ("bob:10", (1001, 10)),
        ("10:11", (10, 11)),
        ("alice:wheel", (1000, 10)),
        ("0", (0, 0)),
    ],
)
def test_resolve_chown(root: Path, spec: str, want: tuple[int, int]) -> None:
    assert resolve_chown(root, spec) == want


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ghost", "unable to find user ghost: no matching entries in passwd file /etc/passwd"),
        ("alice:nogroup", "unable to find group nogroup: no matching entries in group file"),
        ("5000:nogroup", "unable to find group nogroup"),
        (":100", "invalid user ':100'"),
        ("alice:", "invalid user 'alice:'"),
        ("99999999999", "unable to find user 99999999999"),  # out of range: a name
    ],
)
def test_unknown_names(root: Path, spec: str, message: str) -> None:
    for resolve in (resolve_user, resolve_chown):
        with pytest.raises(UnknownUserError, match=message.replace("(", r"\(")) as info:
            resolve(root, spec)
        assert isinstance(info.value, UserError)


def test_missing_files(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "1000") == (1000, 0, ())
    assert resolve_user(tmp_path, "") == (0, 0, ())
    assert resolve_chown(tmp_path, "1000:1000") == (1000, 1000)
    assert resolve_chown(tmp_path, "7") == (7, 7)
    with pytest.raises(UnknownUserError, match="unable to find user alice: no passwd file"):
        resolve_chown(tmp_path, "alice")
    with pytest.raises(UnknownUserError, match="no group file /etc/group"):
        resolve_user(tmp_path, "1:staff")


def test_symlinked_passwd_is_not_followed_out_of_the_root(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "passwd").write_text("evil:x:4242:4242::/:/bin/sh\n")
    (host / "etc" / "group").write_text("evil:x:4242:\n")
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    os.symlink("../../host/etc/passwd", image / "etc" / "passwd")
    os.symlink(str(host / "etc" / "group"), image / "etc" / "group")
    with pytest.raises(UnknownUserError, match="evil"):
        resolve_chown(image, "evil")
    with pytest.raises(UnknownUserError, match="evil"):
        resolve_chown(image, "1:evil")
    # A symlink that stays inside the root is followed.
    (image / "shared").mkdir()
    (image / "shared" / "passwd").write_text("app:x:10:20::/:/bin/sh\n")
    os.unlink(image / "etc" / "passwd")
    os.symlink("/shared/passwd", image / "etc" / "passwd")
    assert resolve_chown(image, "app") == (10, 20)
    assert resolve_user(image, "app") == (10, 20, ())
