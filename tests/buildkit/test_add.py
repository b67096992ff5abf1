"""buildkit.add: ADD's archives, URLs and git sources, against real files and servers.

URLs are served by `http.server` on 127.0.0.1 in a thread; git sources are
bare repositories made in a temporary directory and fetched over file://.
Expectations follow the Dockerfile reference's ADD section.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import re
import stat
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildkit.add import AddError, ChecksumMismatch, add_sources, is_url
from buildkit.dockerfile.instructions import Add
from buildkit.gitsource import GitError, GitFetcher, is_git_url, split_git_url
from buildkit.untar import ArchiveError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown and mknod need root")
MTIME = 1_500_000_000


def spec(*sources: str, dest: str, **kw: Any) -> Add:
    return Add(line=1, end_line=1, original="ADD", sources=sources, dest=dest, **kw)


def tree(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "->" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "/"
            else:
                out[rel] = path.read_text()
    return out


def make_tar(path: Path, mode: str, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def entry(name: str, data: bytes | None = None, **kw: Any) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.mode = kw.pop("mode", 0o644)
    info.uid, info.gid = kw.pop("uid", 1234), kw.pop("gid", 5678)
    for key, value in kw.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    return info, data


SAMPLE = [
    entry("app", type=tarfile.DIRTYPE, mode=0o750),
    entry("app/hello.txt", b"hello"),
    entry("app/run.sh", b"#!/bin/sh", mode=0o755),
    entry("app/link", type=tarfile.SYMTYPE, linkname="hello.txt"),
    entry("app/hard", type=tarfile.LNKTYPE, linkname="app/hello.txt"),
]
SAMPLE_TREE = {
    "out": "/",
    "out/app": "/",
    "out/app/hello.txt": "hello",
    "out/app/run.sh": "#!/bin/sh",
    "out/app/link": "->hello.txt",
    "out/app/hard": "hello",
}


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    c.mkdir()
    return c


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "rootfs"
    d.mkdir()
    return d


def add(ctx: Path, dest: Path, *sources: str, to: str, **kw: Any) -> list[str]:
    fetch = kw.pop("fetch", None)
    git = kw.pop("git", None)
    return add_sources(
        spec(*sources, dest=to, **kw),
        src_root=ctx,
        dest_root=dest,
        workdir="/",
        fetch=fetch,
        git=git,
    )


# ---------------------------------------------------------------- local archives


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("a.tar", "w"),
        ("a.tar.gz", "w:gz"),
        ("a.tbz", "w:bz2"),
        ("a.txz", "w:xz"),
        ("misnamed.zip", "w:gz"),
        ("noext", "w:xz"),
    ],
)
def test_local_archives_are_extracted(ctx: Path, dest: Path, name: str, mode: str) -> None:
    make_tar(ctx / name, mode, SAMPLE)
    add(ctx, dest, name, to="/out")
    assert tree(dest) == SAMPLE_TREE
    assert os.lstat(dest / "out/app/hello.txt").st_ino == os.lstat(dest / "out/app/hard").st_ino
    assert stat.S_IMODE(os.lstat(dest / "out/app").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(dest / "out/app/run.sh").st_mode) == 0o755
    assert os.lstat(dest / "out/app").st_mtime == MTIME
    assert os.lstat(dest / "out/app/hello.txt").st_mtime == MTIME


@needs_root
def test_archive_owners_kept_unless_chown(ctx: Path, dest: Path) -> None:
    make_tar(ctx / "a.tar", "w", SAMPLE)
    add(ctx, dest, "a.tar", to="/out")
    info = os.lstat(dest / "out/app/hello.txt")
    assert (info.st_uid, info.st_gid) == (1234, 5678)
    assert os.lstat(dest / "out").st_uid == 0  # created by ADD
    add(ctx, dest, "a.tar", to="/out2", chown="7:8")
    for rel in ("out2", "out2/app", "out2/app/hello.txt", "out2/app/link"):
        info = os.lstat(dest / rel)
        assert (info.st_uid, info.st_gid) == (7, 8), rel


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("fake.tar.gz", b"not an archive\n"),
        ("empty.tar.gz", b""),
        ("zeros.tar", b"\0" * 1024),
        ("text.gz", None),
    ],
)
def test_non_archives_are_copied(ctx: Path, dest: Path, name: str, content: bytes | None) -> None:
    if content is None:  # gzip of something that is not a tar
        import gzip

        content = gzip.compress(b"plain text")
    (ctx / name).write_bytes(content)
    add(ctx, dest, name, to="/d/")
    assert (dest / "d" / name).read_bytes() == content


def test_unpack_false_copies_the_archive(ctx: Path, dest: Path) -> None:
    make_tar(ctx / "a.tar.gz", "w:gz", SAMPLE)
    add(ctx, dest, "a.tar.gz", to="/d/", unpack=False)
    assert (dest / "d" / "a.tar.gz").read_bytes() == (ctx / "a.tar.gz").read_bytes()
    assert sorted(os.listdir(dest / "d")) == ["a.tar.gz"]


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([entry("../evil", b"x")], "entry '../evil' is outside of the destination"),
        ([entry("a/../../evil", b"x")], "outside of the destination"),
        ([entry("l", type=tarfile.SYMTYPE, linkname="../../../etc")], "invalid symlink 'l'"),
        ([entry("d/l", type=tarfile.SYMTYPE, linkname="/../../x")], "invalid symlink 'd/l'"),
        ([entry("h", type=tarfile.LNKTYPE, linkname="../../etc/passwd")], "hard link target"),
        ([entry("h", type=tarfile.LNKTYPE, linkname="/etc/passwd")], "hard link 'h'.*no such"),
    ],
)
def test_tar_slip_is_refused(ctx: Path, dest: Path, members: list[Any], message: str) -> None:
    make_tar(ctx / "evil.tar", "w", members)
    with pytest.raises(ArchiveError, match=message):
        add(ctx, dest, "evil.tar", to="/x/y")
    assert not (dest / "x" / "evil").exists()
    assert not (dest / "evil").exists()


@pytest.mark.parametrize("to", ["/", "/x/y"])
@pytest.mark.parametrize(
    "member",
    [
        entry("./", b"file"),
        entry(".", b"file"),
        entry("/", b"file"),
        entry("a/..", b"file"),
        entry(".", type=tarfile.SYMTYPE, linkname="elsewhere"),
        entry("./", type=tarfile.FIFOTYPE),
    ],
    ids=["file ./", "file .", "file /", "file a/..", "symlink .", "fifo ./"],
)
def test_a_non_directory_naming_the_destination_is_refused(
    ctx: Path, dest: Path, to: str, member: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    # It would replace the destination directory (the whole root for `/`).
    target = dest / to.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    (target / "keep").write_text("kept")
    make_tar(ctx / "evil.tar", "w", [entry("before", b"b"), member])
    name = member[0].name
    with pytest.raises(ArchiveError, match=rf"evil\.tar: entry {re.escape(repr(name))} "):
        add(ctx, dest, "evil.tar", to=to)
    assert (target / "keep").read_text() == "kept"
    assert target.is_dir()


def test_a_directory_naming_the_destination_merges(ctx: Path, dest: Path) -> None:
    (dest / "x").mkdir()
    (dest / "x" / "keep").write_text("kept")
    make_tar(ctx / "a.tar", "w", [entry("./", type=tarfile.DIRTYPE, mode=0o700), *SAMPLE])
    add(ctx, dest, "a.tar", to="/x")
    assert (dest / "x" / "keep").read_text() == "kept"
    assert (dest / "x" / "app" / "hello.txt").read_text() == "hello"
    assert stat.S_IMODE(os.lstat(dest / "x").st_mode) == 0o700


def test_archive_paths_stay_inside_the_root(ctx: Path, dest: Path, tmp_path: Path) -> None:
    host = tmp_path / "hostdir"
    host.mkdir()
    make_tar(
        ctx / "tricky.tar",
        "w",
        [
            entry("/abs/file", b"abs"),  # a leading slash is dropped
            entry("s", type=tarfile.SYMTYPE, linkname="/"),  # allowed: it points inside
            entry("s/planted", b"through the link"),
            entry("h", type=tarfile.SYMTYPE, linkname=str(host)),
            entry("h/owned", b"x"),
        ],
    )
    add(ctx, dest, "tricky.tar", to="/x")
    assert (dest / "x" / "abs" / "file").read_text() == "abs"
    assert (dest / "planted").read_text() == "through the link"  # the image's /, not the host's
    assert not Path("/planted").exists()
    assert list(host.iterdir()) == []
    assert (dest / str(host).lstrip("/") / "owned").read_text() == "x"


def test_archive_replaces_existing_entries(ctx: Path, dest: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host")
    (dest / "out" / "app").mkdir(parents=True)
    (dest / "out" / "app" / "keep").write_text("kept")
    os.symlink(str(victim), dest / "out" / "app" / "hello.txt")
    (dest / "out" / "app" / "run.sh").mkdir()  # a file replaces a directory, as tar -x does
    make_tar(ctx / "a.tar", "w", SAMPLE)
    add(ctx, dest, "a.tar", to="/out")
    assert victim.read_text() == "host"
    assert (dest / "out/app/hello.txt").read_text() == "hello"
    assert (dest / "out/app/keep").read_text() == "kept"
    assert (dest / "out/app/run.sh").is_file()


@needs_root
def test_device_nodes_as_root(ctx: Path, dest: Path) -> None:
    make_tar(
        ctx / "dev.tar",
        "w",
        [
            entry("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
            entry("fifo", type=tarfile.FIFOTYPE),
        ],
    )
    add(ctx, dest, "dev.tar", to="/dev")
    info = os.lstat(dest / "dev" / "null")
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(dest / "dev" / "fifo").st_mode)


def test_local_files_and_dirs_follow_copy_rules(ctx: Path, dest: Path) -> None:
    (ctx / "d").mkdir()
    (ctx / "d" / "f").write_text("f")
    (ctx / "g.txt").write_text("g")
    add(ctx, dest, "d", "g.txt", to="/o/")
    assert tree(dest) == {"o": "/", "o/f": "f", "o/g.txt": "g"}


def test_checksum_needs_a_remote_source(ctx: Path, dest: Path) -> None:
    (ctx / "g.txt").write_text("g")
    with pytest.raises(AddError, match="only URL and git sources can be checked"):
        add(ctx, dest, "g.txt", to="/o", checksum="sha256:" + "0" * 64)


# ---------------------------------------------------------------- URLs


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(root: Path, name: str, data: bytes) -> str:
    (root / name).write_bytes(data)
    os.utime(root / name, (MTIME, MTIME))  # SimpleHTTPRequestHandler sends it as Last-Modified
    return hashlib.sha256(data).hexdigest()


def test_url_to_directory(ctx: Path, dest: Path, server: tuple[str, Path]) -> None:
    base, www = server
    serve(www, "tool.bin", b"binary")
    add(ctx, dest, f"{base}/tool.bin", to="/dl/")
    info = os.lstat(dest / "dl" / "tool.bin")
    assert (dest / "dl" / "tool.bin").read_bytes() == b"binary"
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_mtime == MTIME
    assert (info.st_uid, info.st_gid) == (0, 0)


def test_url_to_file_with_chmod(ctx: Path, dest: Path, server: tuple[str, Path]) -> None:
    base, www = server
    serve(www, "tool.bin", b"binary")
    add(ctx, dest, f"{base}/tool.bin", to="/usr/bin/tool", chmod="755")
    assert (dest / "usr/bin/tool").read_bytes() == b"binary"
    assert stat.S_IMODE(os.lstat(dest / "usr/bin/tool").st_mode) == 0o755


def test_url_checksum(ctx: Path, dest: Path, server: tuple[str, Path]) -> None:
    base, www = server
    digest = serve(www, "f.txt", b"content")
    add(ctx, dest, f"{base}/f.txt", to="/ok", checksum=f"sha256:{digest}")
    assert (dest / "ok").read_bytes() == b"content"
    wrong = "ab" * 32
    with pytest.raises(ChecksumMismatch) as info:
        add(ctx, dest, f"{base}/f.txt", to="/bad", checksum=f"sha256:{wrong}")
    assert f"{base}/f.txt" in str(info.value)
    assert f"sha256:{wrong}" in str(info.value) and f"sha256:{digest}" in str(info.value)
    assert not (dest / "bad").exists()
    with pytest.raises(AddError, match="invalid checksum"):
        add(ctx, dest, f"{base}/f.txt", to="/bad", checksum="md5:abc")


def test_url_archives_unpack_only_when_asked(
    ctx: Path, dest: Path, server: tuple[str, Path], tmp_path: Path
) -> None:
    base, www = server
    make_tar(www / "a.tar.gz", "w:gz", SAMPLE)
    add(ctx, dest, f"{base}/a.tar.gz", to="/plain/")
    assert os.listdir(dest / "plain") == ["a.tar.gz"]
    add(ctx, dest, f"{base}/a.tar.gz", to="/out", unpack=True)
    assert (dest / "out/app/hello.txt").read_text() == "hello"


def test_url_errors(ctx: Path, dest: Path, server: tuple[str, Path]) -> None:
    base, _www = server
    with pytest.raises(AddError, match="HTTP 404"):
        add(ctx, dest, f"{base}/missing", to="/x")
    assert list(dest.iterdir()) == []


def test_fetch_is_injectable(ctx: Path, dest: Path) -> None:
    from buildkit.add import Fetched, Sink

    def fake(url: str, out: Sink) -> Fetched:
        out.write(url.encode())
        return Fetched()

    add(ctx, dest, "https://example.invalid/dir/name.txt", to="/d/", fetch=fake)
    assert (dest / "d" / "name.txt").read_text() == "https://example.invalid/dir/name.txt"


@pytest.mark.parametrize(
    ("source", "url", "git"),
    [
        ("https://example.com/file.tar.gz", True, False),
        ("http://example.com/x", True, False),
        ("https://github.com/moby/buildkit.git#v0.10.1", True, True),
        ("https://github.com/moby/buildkit.git", True, True),
        ("git@github.com:moby/buildkit.git#main:docs", False, True),
        ("ssh://git@host/repo", False, True),
        ("git://host/repo", False, True),
        ("file:///srv/repo.git#main", False, True),
        ("./file.git", False, False),
        ("src/", False, False),
    ],
)
def test_source_kinds(source: str, url: bool, git: bool) -> None:
    assert (is_url(source), is_git_url(source)) == (url, git)


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("https://h/r.git", ("https://h/r.git", "", "")),
        ("https://h/r.git#v1", ("https://h/r.git", "v1", "")),
        ("git@h:r.git#main:docs/x", ("git@h:r.git", "main", "docs/x")),
        ("https://h/r.git#:sub", ("https://h/r.git", "", "sub")),
    ],
)
def test_split_git_url(url: str, want: tuple[str, str, str]) -> None:
    assert split_git_url(url) == want


# ---------------------------------------------------------------- git


def git(*args: str, cwd: Path) -> str:
    env = {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "HOME": str(cwd),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
    }
    cmd = [
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "init.defaultBranch=main",
        *args,
    ]
    return subprocess.run(
        cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A bare repository: v1 (tagged), main with a script and docs/, a feature branch."""
    base = tmp_path_factory.mktemp("git")
    work = base / "work"
    work.mkdir()
    git("init", "-q", ".", cwd=work)
    (work / "VERSION").write_text("1\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "v1", "-m", "v1", cwd=work)
    (work / "VERSION").write_text("2\n")
    (work / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(work / "run.sh", 0o775)
    (work / "docs").mkdir()
    (work / "docs" / "index.md").write_text("docs\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "two", cwd=work)
    second = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "-b", "feature", cwd=work)
    (work / "VERSION").write_text("feature\n")
    git("commit", "-q", "-am", "three", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    git("clone", "-q", "--bare", str(work), str(base / "repo.git"), cwd=base)
    return {"url": f"file://{base}/repo.git", "first": first, "second": second}


LOCAL_GIT = GitFetcher(allow_file=True)


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("", {"VERSION": "2\n", "run.sh": "#!/bin/sh\n", "docs": "/", "docs/index.md": "docs\n"}),
        (
            "#main",
            {"VERSION": "2\n", "run.sh": "#!/bin/sh\n", "docs": "/", "docs/index.md": "docs\n"},
        ),
        ("#v1", {"VERSION": "1\n"}),  # an annotated tag
        (
            "#feature",
            {
                "VERSION": "feature\n",
                "run.sh": "#!/bin/sh\n",
                "docs": "/",
                "docs/index.md": "docs\n",
            },
        ),
        ("#FIRST", {"VERSION": "1\n"}),  # a commit hash
        ("#main:docs", {"index.md": "docs\n"}),
    ],
)
def test_git(ctx: Path, dest: Path, repo: dict[str, str], ref: str, want: dict[str, str]) -> None:
    ref = ref.replace("FIRST", repo["first"])
    add(ctx, dest, repo["url"] + ref, to="/src", git=LOCAL_GIT)
    assert tree(dest / "src") == want


def test_git_commit_from_a_server_refusing_unadvertised_objects(
    ctx: Path, dest: Path, repo: dict[str, str]
) -> None:
    # Protocol v0 refuses a `want` of a commit no ref points at: the fetcher
    # then fetches the branches and checks the commit out.
    v0 = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "protocol.version",
        "GIT_CONFIG_VALUE_0": "0",
    }
    fetcher = GitFetcher(allow_file=True, extra_env=v0)
    add(ctx, dest, f"{repo['url']}#{repo['first']}", to="/src", git=fetcher)
    assert tree(dest / "src") == {"VERSION": "1\n"}


def test_git_modes_and_owners(ctx: Path, dest: Path, repo: dict[str, str]) -> None:
    add(ctx, dest, repo["url"] + "#main", to="/src", git=LOCAL_GIT, chown="10:20")
    assert stat.S_IMODE(os.lstat(dest / "src/run.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(dest / "src/VERSION").st_mode) == 0o644
    assert stat.S_IMODE(os.lstat(dest / "src/docs").st_mode) == 0o755
    assert os.lstat(dest / "src/VERSION").st_uid == 10


def test_git_keep_git_dir(ctx: Path, dest: Path, repo: dict[str, str]) -> None:
    add(ctx, dest, repo["url"] + "#main", to="/src", git=LOCAL_GIT, keep_git_dir=True)
    assert (dest / "src" / ".git").is_dir()
    head = git("rev-parse", "HEAD", cwd=dest / "src")
    assert head == repo["second"]


def test_git_checksum(ctx: Path, dest: Path, repo: dict[str, str]) -> None:
    add(ctx, dest, repo["url"] + "#v1", to="/a", git=LOCAL_GIT, checksum=repo["first"][:10])
    with pytest.raises(ChecksumMismatch, match=f"got {repo['first']}"):
        add(ctx, dest, repo["url"] + "#v1", to="/b", git=LOCAL_GIT, checksum="deadbeef")
    assert not (dest / "b").exists()


@pytest.mark.parametrize(
    ("suffix", "fetcher", "message"),
    [
        ("#main", GitFetcher(), "file:// repositories are not allowed"),
        ("#no-such-branch", LOCAL_GIT, "failed to fetch no-such-branch"),
        ("#--upload-pack=touch", LOCAL_GIT, "invalid ref"),
        ("#main:nodir", LOCAL_GIT, "nodir is not a directory"),
    ],
)
def test_git_errors(
    ctx: Path, dest: Path, repo: dict[str, str], suffix: str, fetcher: GitFetcher, message: str
) -> None:
    with pytest.raises(GitError, match=message):
        add(ctx, dest, repo["url"] + suffix, to="/src", git=fetcher)
    assert not (dest / "src").exists()


# ------------------------------------------------------------ remembered parent directories


def test_archive_members_under_a_replaced_parent_land_inside_the_root(tmp_path: Path) -> None:
    """Extraction remembers resolved parents; replacing one must forget them."""
    ctx, dest = tmp_path / "ctx", tmp_path / "dest"
    ctx.mkdir()
    dest.mkdir()
    make_tar(
        ctx / "a.tar",
        "w",
        [
            entry("d", type=tarfile.DIRTYPE, mode=0o755),
            entry("d/one", b"1"),
            entry("t", type=tarfile.DIRTYPE, mode=0o755),
            entry("d", type=tarfile.SYMTYPE, linkname="/t"),
            entry("d/two", b"2"),
            entry("d", type=tarfile.DIRTYPE, mode=0o755),
            entry("d/three", b"3"),
        ],
    )
    add_sources(spec("a.tar", dest="/out/"), src_root=ctx, dest_root=dest, workdir="/")
    assert tree(dest / "out") == {
        "d": "/",
        "d/three": "3",
        "t": "/",
    }
    # d -> /t is resolved inside the root: /t, not /out/t, never the host's /t
    assert (dest / "t" / "two").read_text() == "2"


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_archive_file_data_plain_and_compressed(tmp_path: Path, mode: str) -> None:
    """Plain archives copy member data from its offset; compressed ones read it."""
    ctx, dest = tmp_path / "ctx", tmp_path / "dest"
    ctx.mkdir()
    dest.mkdir()
    big = os.urandom(3 << 20) + b"tail"
    make_tar(
        ctx / "a.tar",
        mode,
        [entry("big", big, mode=0o640), entry("empty", b""), entry("small", b"x" * 513)],
    )
    add_sources(spec("a.tar", dest="/"), src_root=ctx, dest_root=dest, workdir="/")
    assert (dest / "big").read_bytes() == big
    assert (dest / "empty").read_bytes() == b""
    assert (dest / "small").read_bytes() == b"x" * 513
    info = os.stat(dest / "big")
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert info.st_mtime == MTIME


def test_truncated_plain_archive_is_an_error(tmp_path: Path) -> None:
    ctx, dest = tmp_path / "ctx", tmp_path / "dest"
    ctx.mkdir()
    dest.mkdir()
    path = make_tar(ctx / "a.tar", "w", [entry("big", b"y" * 100_000)])
    with open(path, "r+b") as f:
        f.truncate(512 + 50_000)
    with pytest.raises(tarfile.TarError):
        add_sources(spec("a.tar", dest="/"), src_root=ctx, dest_root=dest, workdir="/")


# ---------------------------------------------------------------- identities for the cache key


def test_downloads_key_on_content_and_serve_the_same_bytes(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    from buildkit.add import Downloads

    base, www = server
    want = serve(www, "f.txt", b"one")
    where = tmp_path / "downloads"
    where.mkdir()
    downloads = Downloads(where)
    assert downloads.identity(f"{base}/f.txt") == f"sha256:{want}"
    serve(www, "f.txt", b"two")  # same URL, same Last-Modified, new content
    assert downloads.identity(f"{base}/f.txt") == f"sha256:{want}"  # this build's copy
    assert downloads.get(f"{base}/f.txt").path.read_bytes() == b"one"
    want = hashlib.sha256(b"two").hexdigest()
    assert Downloads(where).identity(f"{base}/f.txt") == f"sha256:{want}"  # another build
    with pytest.raises(AddError, match="HTTP 404"):
        downloads.identity(f"{base}/missing")
    assert sorted(p.read_bytes() for p in where.iterdir()) == [b"one", b"two"]  # no 404 file


def test_git_resolve_names_the_commit(repo: dict[str, str]) -> None:
    main = LOCAL_GIT.resolve(repo["url"] + "#main")
    assert repo["second"] in main
    assert LOCAL_GIT.resolve(repo["url"]) != main  # HEAD: keyed apart from #main
    assert repo["second"] in LOCAL_GIT.resolve(repo["url"])
    v1 = LOCAL_GIT.resolve(repo["url"] + "#v1:sub")
    # An annotated tag: its tag object, which a moved tag replaces.
    assert v1.startswith("v1\n") and v1.endswith("\trefs/tags/v1\n")
    # A commit hash names no ref: it stands for itself.
    assert LOCAL_GIT.resolve(f"{repo['url']}#{repo['first']}") == f"{repo['first']}\n"


def test_git_resolve_follows_a_moved_branch(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", ".", cwd=work)
    (work / "f").write_text("1")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    url = f"file://{work}#main"
    before = LOCAL_GIT.resolve(url)
    assert LOCAL_GIT.resolve(url) == before
    (work / "f").write_text("2")
    git("commit", "-q", "-am", "two", cwd=work)
    after = LOCAL_GIT.resolve(url)
    assert after != before
    assert git("rev-parse", "HEAD", cwd=work) in after


@pytest.mark.parametrize(
    ("suffix", "fetcher", "message"),
    [
        ("#main", GitFetcher(), "file:// repositories are not allowed"),
        ("#--upload-pack=touch", LOCAL_GIT, "invalid ref"),
    ],
)
def test_git_resolve_refuses_what_fetch_refuses(
    repo: dict[str, str], suffix: str, fetcher: GitFetcher, message: str
) -> None:
    with pytest.raises(GitError, match=message):
        fetcher.resolve(repo["url"] + suffix)
    with pytest.raises(GitError, match="failed to resolve main of file:///nonexistent"):
        LOCAL_GIT.resolve("file:///nonexistent/repo.git#main")


def test_a_ref_that_moves_after_its_key_is_not_added(repo: dict[str, str], tmp_path: Path) -> None:
    """The build keyed the step on what `main` named; if it moves before the step
    fetches, the step fails instead of adding a tree its key does not name.
    Tags (annotated: ls-remote lists the tag object) and unmoved refs pass."""
    from buildkit.add import Downloads
    from buildkit.gitsource import GitError

    bare = tmp_path / "moving.git"
    git("clone", "-q", "--bare", repo["url"], str(bare), cwd=tmp_path)
    url = f"file://{bare}"
    downloads = Downloads(tmp_path, git=LOCAL_GIT)
    for ref in ("#main", "#v1"):
        downloads.git_identity(url + ref)
    _, commit = downloads.git_fetch(url + "#main", tmp_path / "unmoved")
    assert commit == repo["second"]
    git("update-ref", "refs/heads/main", repo["first"], cwd=bare)  # main moves
    with pytest.raises(GitError, match="main moved on the remote while the build ran"):
        downloads.git_fetch(url + "#main", tmp_path / "moved")
    _, commit = downloads.git_fetch(url + "#v1", tmp_path / "tag")
    assert commit == repo["first"]
    later = Downloads(tmp_path, git=LOCAL_GIT)  # the next build keys on the new commit
    later.git_identity(url + "#main")
    assert later.git_fetch(url + "#main", tmp_path / "next")[1] == repo["first"]


def test_the_ref_fetch_takes_is_the_one_checked(repo: dict[str, str], tmp_path: Path) -> None:
    """ls-remote lists every ref ending in the name; the check follows the one
    git fetch takes: a tag before a branch of the same name, `main` and not
    `release/main`."""
    from buildkit.add import Downloads
    from buildkit.gitsource import GitError

    bare = tmp_path / "names.git"
    git("clone", "-q", "--bare", repo["url"], str(bare), cwd=tmp_path)
    feature = git("rev-parse", "feature", cwd=bare)
    git("branch", "v1", repo["second"], cwd=bare)  # tag v1 at first, branch v1 at second
    git("branch", "release/main", feature, cwd=bare)
    url = f"file://{bare}"
    downloads = Downloads(tmp_path, git=LOCAL_GIT)
    for ref in ("#v1", "#main"):
        downloads.git_identity(url + ref)
    git("tag", "-f", "v1", repo["second"], cwd=bare)  # the tag moves onto the branch's commit
    git("update-ref", "refs/heads/main", feature, cwd=bare)  # main moves onto release/main's
    for ref, n in (("#v1", 1), ("#main", 2)):
        with pytest.raises(GitError, match="moved on the remote"):
            downloads.git_fetch(url + ref, tmp_path / f"co{n}")
