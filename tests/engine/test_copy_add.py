"""COPY and ADD through real builds: destinations, globs, owners, modes, sources."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from buildkit.errors import FarmError
from tests.engine.conftest import BASE, build, run_context, write_context

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

FILES = {
    "a.txt": "a\n",
    "b.txt": "b\n",
    "c.md": "c\n",
    "dir/x": "x\n",
    "dir/sub/y": "y\n",
    "dir/sub/z.md": "z\n",
}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


def test_destination_file_or_directory(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "COPY a.txt /into-dir/\n"
        + "COPY a.txt /as-file\n"
        + "COPY a.txt b.txt /several/\n"
        + "WORKDIR /work\n"
        + "COPY b.txt relative/\n"
        + "COPY b.txt .\n",
        FILES,
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "into-dir/a.txt").read_text() == "a\n"
    assert (root / "as-file").read_text() == "a\n"
    assert sorted(os.listdir(root / "several")) == ["a.txt", "b.txt"]
    assert (root / "work/relative/b.txt").read_text() == "b\n"
    assert (root / "work/b.txt").read_text() == "b\n"
    assert _mode(root / "into-dir") == 0o755


def test_several_sources_need_a_directory(tmp_path: Path) -> None:
    with pytest.raises(FarmError, match="/not-a-dir"):
        build(tmp_path, BASE + "COPY a.txt b.txt /not-a-dir\n", FILES)


def test_wildcards_and_directory_contents(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "COPY *.txt /glob/\nCOPY dir /contents/\nCOPY d?r/s* /sub/\nCOPY nomatch* /none/\n",
        FILES,
    )
    root = built.rootfs(tmp_path / "root")
    assert sorted(os.listdir(root / "glob")) == ["a.txt", "b.txt"]
    # A directory source copies its contents, not the directory itself.
    assert sorted(os.listdir(root / "contents")) == ["sub", "x"]
    assert (root / "contents/sub/y").read_text() == "y\n"
    assert sorted(os.listdir(root / "sub")) == ["y", "z.md"]


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FarmError, match=r"missing\.txt"):
        build(tmp_path, BASE + "COPY missing.txt /\n", FILES)


def test_chown_by_name_and_by_id(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "RUN echo 'app:x:1000:1000::/:/bin/sh' >> /etc/passwd && echo 'grp:x:2000:' >> /etc/group\n"
        + "COPY --chown=nobody:nobody a.txt /names\n"
        + "COPY --chown=app:grp dir /named-dir/\n"
        + "COPY --chown=1234:5678 a.txt /ids\n"
        + "COPY --chown=1234 a.txt /uid-only\n"
        + "COPY --chown=app b.txt /deep/new/parent/\n"
        + "ADD --chown=4321:8765 b.txt /added\n",
        FILES,
    )
    root = built.rootfs(tmp_path / "root")
    assert _owner(root / "names") == (65534, 65534)
    assert _owner(root / "named-dir/sub/y") == (1000, 2000)
    assert _owner(root / "named-dir/sub") == (1000, 2000)
    assert _owner(root / "ids") == (1234, 5678)
    assert _owner(root / "uid-only") == (1234, 1234)
    assert _owner(root / "deep/new/parent/b.txt") == (1000, 1000)
    assert _owner(root / "added") == (4321, 8765)
    # Without --chown, files from the context belong to root.
    assert _owner(root / "etc/passwd") == (0, 0)


def test_chown_unknown_user_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FarmError, match="nosuch"):
        build(tmp_path, BASE + "COPY --chown=nosuch a.txt /\n", FILES)


def test_chmod_octal_and_symbolic(tmp_path: Path) -> None:
    files = {**FILES, "tool": ("#!/bin/sh\n", 0o700)}
    built = build(
        tmp_path,
        BASE
        + "COPY --chmod=0751 a.txt /octal\n"
        + "COPY --chmod=600 dir /octal-dir/\n"
        + "COPY --chmod=u=rwX,go=rX dir /symbolic-dir/\n"
        + "COPY --chmod=u=rwX,go=rX tool a.txt /symbolic/\n"
        + "COPY --chmod=go+w b.txt /plus\n",
        files,
    )
    root = built.rootfs(tmp_path / "root")
    assert _mode(root / "octal") == 0o751
    assert _mode(root / "octal-dir/x") == 0o600
    assert _mode(root / "octal-dir/sub") == 0o600
    assert _mode(root / "symbolic-dir/sub") == 0o755
    assert _mode(root / "symbolic-dir/sub/y") == 0o644
    assert _mode(root / "symbolic/tool") == 0o755
    assert _mode(root / "symbolic/a.txt") == 0o644
    assert _mode(root / "plus") == 0o666


def test_modes_are_kept_without_chmod(tmp_path: Path) -> None:
    built = build(tmp_path, BASE + "COPY . /ctx/\n", {"run.sh": ("#!/bin/sh\n", 0o750)})
    assert _mode(built.rootfs(tmp_path / "root") / "ctx/run.sh") == 0o750


def test_copy_from_a_stage_by_name_and_index(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE.replace("FROM scratch", "FROM scratch AS builder")
        + "RUN mkdir /out && echo built > /out/artifact && chown 1234:1234 /out/artifact\n"
        + "FROM scratch\n"
        + "COPY --from=builder /out/artifact /by-name\n"
        + "COPY --from=0 /out /by-index/\n",
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "by-name").read_text() == "built\n"
    assert (root / "by-index/artifact").read_text() == "built\n"
    # --from keeps the owners of the source stage.
    assert _owner(root / "by-name") == (1234, 1234)
    # Only the copied files: the final stage is FROM scratch.
    assert sorted(os.listdir(root)) == ["by-index", "by-name"]


def test_exclude(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "COPY --exclude=*.md --exclude=dir/x . /ex/\n",
        FILES,
    )
    root = built.rootfs(tmp_path / "root")
    assert not (root / "ex/c.md").exists()
    assert not (root / "ex/dir/x").exists()
    assert (root / "ex/a.txt").exists() and (root / "ex/dir/sub/y").exists()
    assert (root / "ex/dir/sub/z.md").exists()  # *.md matches the top level only


def test_parents(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "COPY --parents dir/sub/y a.txt /p/\nCOPY --parents ./dir/**/*.md /md/\n",
        FILES,
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "p/dir/sub/y").read_text() == "y\n"
    assert (root / "p/a.txt").read_text() == "a\n"
    assert (root / "md/dir/sub/z.md").read_text() == "z\n"
    assert not (root / "md/dir/x").exists()


def test_link_layer_is_independent_of_the_base(tmp_path: Path) -> None:
    first = build(tmp_path, BASE + "COPY --link dir /linked/\n", FILES, context_name="one")
    second = build(
        tmp_path,
        BASE + "RUN echo other base > /other\nCOPY --link dir /linked/\n",
        FILES,
        context_name="two",
    )
    assert first.layer_digests()[-1] == second.layer_digests()[-1]
    names = set(first.layer_members(-1))
    assert {"linked/x", "linked/sub/y"} <= names
    assert not [n for n in names if n.startswith(("bin", "etc"))]
    root = second.rootfs(tmp_path / "root")
    assert (root / "linked/sub/y").read_text() == "y\n"
    assert (root / "other").exists()


def test_heredoc_copy(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "ARG WHO=you\n"
        + "COPY <<EOF /hello.txt\nhello $WHO\nEOF\n"
        + "COPY <<one <<two /docs/\nfirst\none\nsecond\ntwo\n",
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "hello.txt").read_text() == "hello you\n"
    assert _mode(root / "hello.txt") == 0o644
    assert (root / "docs/one").read_text() == "first\n"
    assert (root / "docs/two").read_text() == "second\n"


def _targz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.uid = info.gid = 42
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_add_extracts_a_local_tar_gz_but_copy_does_not(tmp_path: Path) -> None:
    archive = _targz({"pkg/one": b"1\n", "pkg/two": b"2\n"})
    built = build(
        tmp_path,
        BASE + "ADD bundle.tar.gz /opt/\nCOPY bundle.tar.gz /copied/\n",
        {"bundle.tar.gz": archive},
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "opt/pkg/one").read_text() == "1\n"
    assert (root / "opt/pkg/two").read_text() == "2\n"
    assert _mode(root / "opt/pkg/one") == 0o640
    assert _owner(root / "opt/pkg/one") == (42, 42)
    assert (root / "copied/bundle.tar.gz").read_bytes() == archive


def test_context_symlink_to_host_file_is_not_followed_out(tmp_path: Path) -> None:
    host_passwd = Path("/etc/passwd").read_bytes()
    context = write_context(tmp_path / "context", BASE + "COPY dir /d/\n", {"dir/regular": "r\n"})
    (context / "dir/pw").symlink_to("/etc/passwd")
    (context / "pw").symlink_to("/etc/passwd")
    home = tmp_path / "farm-home"
    home.mkdir()
    built = run_context(context, home)
    root = built.rootfs(tmp_path / "root")
    # Inside a copied directory a symlink stays a symlink, target as written.
    assert (root / "d/pw").is_symlink()
    assert os.readlink(root / "d/pw") == "/etc/passwd"
    for info in built.layer_members(-1).values():
        if info.isfile():
            assert built.layer_file(-1, info.name) != host_passwd
    # Named as a source, it resolves inside the context, where /etc/passwd is not.
    (context / "Dockerfile").write_text(BASE + "COPY pw /pw\n")
    with pytest.raises(FarmError, match="not found"):
        run_context(context, home)


def test_dockerignore_is_honoured(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "COPY . /all/\n",
        {
            **FILES,
            ".dockerignore": "*.md\n!keep.md\ndir/sub\nsecret\n",
            "keep.md": "kept\n",
            "secret/key": "hunter2\n",
        },
    )
    root = built.rootfs(tmp_path / "root")
    names = {str(p.relative_to(root / "all")) for p in (root / "all").rglob("*")}
    assert "c.md" not in names and "keep.md" in names
    assert "dir/x" in names and "dir/sub" not in names
    assert not [n for n in names if n.startswith("secret")]
    with pytest.raises(FarmError, match="secret"):
        build(
            tmp_path,
            BASE + "COPY secret/key /\n",
            {".dockerignore": "secret\n", "secret/key": "k\n"},
            context_name="ignored",
        )


def test_copy_from_a_tagged_image(tmp_path: Path) -> None:
    home = tmp_path / "farm-home"
    build(
        tmp_path,
        BASE + "RUN mkdir /out && echo from-image > /out/f && rm /etc/group\n",
        tags=["tools:1"],
        context_name="tools",
    )
    built = build(
        tmp_path,
        "FROM scratch\nCOPY --from=tools:1 /out/f /f\nCOPY --from=tools:1 /etc /etc-copy/\n",
        home=home,
        context_name="user",
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "f").read_text() == "from-image\n"
    assert sorted(os.listdir(root / "etc-copy")) == ["passwd"]  # the whiteout applied
