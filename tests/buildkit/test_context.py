"""Build contexts: directories, tarballs, stdin and git, read as `docker build` reads them."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from buildkit.context import (
    BuildContext,
    context_from_git,
    context_from_stdin,
    context_from_tarball,
    open_context,
)
from buildkit.contexts.git import GitSource, is_git_url, parse_git_url, redact_url
from buildkit.errors import ContextError

DOCKERFILE = "FROM scratch\nCOPY . /\n"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def paths(context: BuildContext) -> list[str]:
    return [e.path for e in context.iter_files()]


def tar_bytes(files: dict[str, str], compression: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tar:
        for rel, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def evil_tar(*members: tuple[str, str, str]) -> bytes:
    """Members as (kind, name, link or content): kind is file, dir, sym, hard or chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for kind, name, extra in members:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = extra.encode()
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, extra
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, extra
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


# --- directories -----------------------------------------------------------------


def test_directory_context_applies_dockerignore(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path / "ctx",
        {
            "Dockerfile": DOCKERFILE,
            ".dockerignore": "*.log\nbuild\nvendor\n!vendor/keep/\n",
            "app.py": "print()",
            "debug.log": "x",
            "build/out.o": "x",
            "vendor/drop/a": "x",
            "vendor/keep/b": "x",
            "src/z.py": "",
            "src/a.py": "",
        },
    )
    with open_context("ctx", cwd=tmp_path) as context:
        assert context.root == root.resolve()
        assert context.dockerfile_text == DOCKERFILE
        assert context.dockerfile_name == "Dockerfile"
        assert context.git_commit_time is None
        assert paths(context) == [
            ".dockerignore",
            "Dockerfile",
            "app.py",
            "src",
            "src/a.py",
            "src/z.py",
            # excluded, but sent because an exception re-includes something inside
            "vendor",
            "vendor/keep",
            "vendor/keep/b",
        ]
    assert root.exists()  # a directory context is used in place, never removed


def test_ignored_dockerfile_is_still_used_but_not_in_the_context(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"Dockerfile": DOCKERFILE, ".dockerignore": "Dockerfile\n.dockerignore\n", "a": ""},
    )
    context = open_context(str(tmp_path))
    assert context.dockerfile_text == DOCKERFILE
    assert paths(context) == ["a"]


def test_lowercase_dockerfile_is_found_in_a_directory(tmp_path: Path) -> None:
    write_tree(tmp_path, {"dockerfile": "FROM lower\n"})
    assert open_context(str(tmp_path)).dockerfile_text == "FROM lower\n"


def test_dockerfile_outside_the_context_is_relative_to_cwd(tmp_path: Path) -> None:
    write_tree(tmp_path, {"ctx/a.txt": "", "ci/app.Dockerfile": "FROM outside\n"})
    context = open_context("ctx", dockerfile="ci/app.Dockerfile", cwd=tmp_path)
    assert context.dockerfile_text == "FROM outside\n"
    assert context.dockerfile_path == (tmp_path / "ci/app.Dockerfile").resolve()
    assert paths(context) == ["a.txt"]


def test_dockerfile_specific_dockerignore_takes_precedence(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "ctx/Dockerfile": DOCKERFILE,
            "ctx/.dockerignore": "a.txt\n",
            "ctx/a.txt": "",
            "ctx/b.txt": "",
            "ctx/web.Dockerfile": "FROM web\n",
            "ctx/web.Dockerfile.dockerignore": "b.txt\n",
            "ci/app.Dockerfile": "FROM app\n",
            "ci/app.Dockerfile.dockerignore": "*.txt\n",
        },
    )
    root = open_context("ctx", cwd=tmp_path)
    assert "a.txt" not in paths(root) and "b.txt" in paths(root)
    web = open_context("ctx", dockerfile="ctx/web.Dockerfile", cwd=tmp_path)
    assert "a.txt" in paths(web) and "b.txt" not in paths(web)
    outside = open_context("ctx", dockerfile="ci/app.Dockerfile", cwd=tmp_path)
    assert [p for p in paths(outside) if p.endswith(".txt")] == []


def test_default_dockerfile_dockerignore_beats_the_root_one(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "Dockerfile": DOCKERFILE,
            "Dockerfile.dockerignore": "b\n",
            ".dockerignore": "a\n",
            "a": "",
            "b": "",
        },
    )
    got = paths(open_context(str(tmp_path)))
    assert "a" in got and "b" not in got


def test_symlinks_are_kept_and_never_followed(tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"secret": "s3cret"})
    root = write_tree(tmp_path / "ctx", {"Dockerfile": DOCKERFILE})
    (root / "to-secret").symlink_to(outside / "secret")
    (root / "to-dir").symlink_to(outside)
    context = open_context(str(root))
    entries = {e.path: e for e in context.iter_files()}
    assert entries["to-dir"].kind == "symlink"
    assert entries["to-secret"].link_target == str(outside / "secret")
    assert "to-dir/secret" not in entries
    buf = io.BytesIO()
    context.write_tarball(buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        member = tar.getmember("to-secret")
        assert member.issym() and member.linkname == str(outside / "secret")
        assert b"s3cret" not in buf.getvalue()


def test_missing_context_and_dockerfile_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="nope"):
        open_context("nope", cwd=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ContextError, match="empty/Dockerfile"):
        open_context("empty", cwd=tmp_path)
    with pytest.raises(ContextError, match=r"missing\.Dockerfile"):
        open_context("empty", dockerfile="missing.Dockerfile", cwd=tmp_path)


def test_bad_dockerignore_is_a_context_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"Dockerfile": DOCKERFILE, ".dockerignore": "ok\n[\n"})
    with pytest.raises(ContextError, match=r"\.dockerignore"):
        open_context(str(tmp_path))


def test_dockerfile_from_stdin_with_a_directory(tmp_path: Path) -> None:
    write_tree(tmp_path, {".dockerignore": "x\n", "x": "", "y": ""})
    context = open_context(str(tmp_path), dockerfile="-", stdin=io.BytesIO(b"FROM stdin\n"))
    assert context.dockerfile_text == "FROM stdin\n"
    assert paths(context) == [".dockerignore", "y"]


# --- tarballs and stdin ----------------------------------------------------------

FILES = {"Dockerfile": DOCKERFILE, "src/app.py": "print()", "sub/Dockerfile": "FROM sub\n"}


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz", "zstd"])
def test_tarball_file_of_each_compression(tmp_path: Path, compression: str) -> None:
    if compression == "zstd":
        data = zstandard.ZstdCompressor().compress(tar_bytes(FILES))
    else:
        data = tar_bytes(FILES, compression)
    archive = tmp_path / "ctx.tar"
    archive.write_bytes(data)
    context = open_context(str(archive), scratch=tmp_path / "scratch")
    with context:
        assert context.dockerfile_text == DOCKERFILE
        assert paths(context) == ["Dockerfile", "src", "src/app.py", "sub", "sub/Dockerfile"]
        assert context.temp_dir is not None and context.temp_dir.exists()
    assert not context.temp_dir.exists()


def test_tarball_dockerfile_is_relative_to_the_context_root(tmp_path: Path) -> None:
    archive = tmp_path / "ctx.tar.gz"
    archive.write_bytes(tar_bytes(FILES, "gz"))
    other = tmp_path / "elsewhere"
    write_tree(other, {"sub/Dockerfile": "FROM wrong\n"})
    with context_from_tarball(archive, dockerfile="sub/Dockerfile") as context:
        assert context.dockerfile_text == "FROM sub\n"
    with pytest.raises(ContextError, match="nope"):
        context_from_tarball(archive, dockerfile="nope")


def test_tarball_dockerfile_symlink_cannot_leave_the_context(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM host\n")
    archive = tmp_path / "ctx.tar"
    archive.write_bytes(
        evil_tar(("sym", "Dockerfile", "../../../../../../" + str(tmp_path)[1:] + "/Dockerfile"))
    )
    with pytest.raises(ContextError, match="Dockerfile"):
        context_from_tarball(archive, scratch=tmp_path / "scratch")
    assert list((tmp_path / "scratch").iterdir()) == []  # the copy is removed on failure


def test_bad_tarball_names_the_path(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8bthis is not gzip")
    with pytest.raises(ContextError, match=r"broken\.tar\.gz"):
        open_context(str(archive))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ContextError, match=r"notes\.txt"):
        open_context(str(text))


def test_stdin_tarball(tmp_path: Path) -> None:
    stream = io.BytesIO(tar_bytes(FILES, "gz"))
    with open_context("-", stdin=stream, dockerfile="sub/Dockerfile", scratch=tmp_path) as context:
        assert context.dockerfile_text == "FROM sub\n"
        assert "src/app.py" in paths(context)


def test_stdin_dockerfile_alone(tmp_path: Path) -> None:
    stream = io.BytesIO(b"FROM alpine\nRUN true\n")
    with context_from_stdin(stream, scratch=tmp_path) as context:
        assert context.dockerfile_text == "FROM alpine\nRUN true\n"
        assert paths(context) == ["Dockerfile"]
        assert not context.ignore


def test_stdin_errors(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="empty"):
        context_from_stdin(io.BytesIO(b""), scratch=tmp_path)
    with pytest.raises(ContextError, match="stdin"):
        open_context("-")
    with pytest.raises(ContextError, match="both"):
        open_context("-", dockerfile="-", stdin=io.BytesIO(b"FROM x\n"))


@pytest.mark.parametrize(
    "members",
    [
        [("file", "../evil", "x")],
        [("file", "a/../../evil", "x")],
        [("file", "/abs-evil", "x")],
        [("sym", "link", "{outside}"), ("file", "link/evil", "x")],
        [("sym", "link", ".."), ("file", "link/evil", "x")],
        [("dir", "d", ""), ("sym", "d/up", "../.."), ("file", "d/up/evil", "x")],
        [("hard", "h", "../../etc/passwd")],
        [("hard", "h", "/etc/passwd")],
        [("sym", "s", "/etc/passwd"), ("hard", "h", "s")],
        [("chr", "null", "")],
    ],
)
def test_tar_slip_attempts_are_rejected(
    tmp_path: Path, members: list[tuple[str, str, str]]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    members = [(k, n, e.replace("{outside}", str(outside))) for k, n, e in members]
    scratch = tmp_path / "scratch"
    with pytest.raises(ContextError):
        context_from_stdin(io.BytesIO(evil_tar(*members)), scratch=scratch)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "evil").exists() and not Path("/abs-evil").exists()
    assert list(scratch.iterdir()) == []


def test_tar_symlinks_and_hardlinks_inside_are_kept(tmp_path: Path) -> None:
    data = evil_tar(
        ("file", "Dockerfile", DOCKERFILE),
        ("file", "real", "content"),
        ("sym", "abs-link", "/etc/passwd"),
        ("sym", "rel-link", "real"),
        ("hard", "hard", "real"),
    )
    with context_from_stdin(io.BytesIO(data), scratch=tmp_path) as context:
        entries = {e.path: e for e in context.iter_files()}
        assert entries["abs-link"].kind == "symlink"
        assert entries["abs-link"].link_target == "/etc/passwd"
        assert entries["rel-link"].link_target == "real"
        assert entries["hard"].kind == "file" and entries["hard"].size == len("content")


# --- deterministic tarball ---------------------------------------------------------


def make_copy(root: Path, *, mtime: float, owner: int) -> Path:
    write_tree(root, {"Dockerfile": DOCKERFILE, "b/x.sh": "echo x", "a.txt": "a", "b/c/d": "d"})
    os.chmod(root / "b/x.sh", 0o755)
    (root / "link").symlink_to("a.txt")
    os.link(root / "a.txt", root / "hard")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.geteuid() == 0:
                os.lchown(path, owner, owner)
            if not os.path.islink(path):
                os.utime(path, (mtime, mtime))
    return root


def digest_of(root: Path) -> tuple[str, bytes]:
    buf = io.BytesIO()
    digest = open_context(str(root)).write_tarball(buf)
    return digest, buf.getvalue()


def test_same_content_gives_the_same_digest(tmp_path: Path) -> None:
    one = make_copy(tmp_path / "one", mtime=1_000_000, owner=1000)
    time.sleep(0.01)
    two = make_copy(tmp_path / "two", mtime=time.time(), owner=2000)
    digest_one, tar_one = digest_of(one)
    digest_two, tar_two = digest_of(two)
    assert digest_one == digest_two
    assert tar_one == tar_two
    assert digest_one.startswith("sha256:") and len(digest_one) == len("sha256:") + 64

    with tarfile.open(fileobj=io.BytesIO(tar_one)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "Dockerfile", "a.txt", "b", "b/c", "b/c/d", "b/x.sh", "hard", "link",
    ]  # fmt: skip
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname, member.mtime) == (
            0,
            0,
            "",
            "",
            0,
        )
    by_name = {m.name: m for m in members}
    assert by_name["b/x.sh"].mode == 0o755
    assert by_name["link"].issym() and by_name["link"].linkname == "a.txt"
    assert by_name["hard"].isreg() and by_name["hard"].size == 1


def test_digest_changes_with_content_and_mode(tmp_path: Path) -> None:
    root = make_copy(tmp_path / "ctx", mtime=0, owner=0)
    before, _ = digest_of(root)
    os.chmod(root / "a.txt", 0o600)
    after_mode, _ = digest_of(root)
    (root / "b/c/d").write_text("changed")
    after_content, _ = digest_of(root)
    assert len({before, after_mode, after_content}) == 3


def test_digest_honours_dockerignore(tmp_path: Path) -> None:
    root = make_copy(tmp_path / "ctx", mtime=0, owner=0)
    before, _ = digest_of(root)
    (root / "build.log").write_text("noise")
    (root / ".dockerignore").write_text("*.log\n")
    (root / "more.log").write_text("more noise")
    with_ignore, tar = digest_of(root)
    (root / "build.log").write_text("different noise")
    assert digest_of(root)[0] == with_ignore
    assert with_ignore != before  # .dockerignore itself is part of the context
    assert b"noise" not in tar


# --- git ----------------------------------------------------------------------


def git(cwd: Path, *args: str, when: int = 1_700_000_000) -> str:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_AUTHOR_DATE": f"{when} +0000",
        "GIT_COMMITTER_DATE": f"{when} +0000",
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A bare repository: main (3 commits), tags v1 (light) and v2 (annotated), branch dev."""
    base = tmp_path_factory.mktemp("git")
    work = base / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    write_tree(work, {"Dockerfile": "FROM one\n", "app/Dockerfile": "FROM app-one\n"})
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "one", when=1_700_000_001)
    first = git(work, "rev-parse", "HEAD")
    git(work, "tag", "v1")
    write_tree(
        work, {"Dockerfile": "FROM two\n", "app/main.py": "", "app/.dockerignore": "*.pyc\n"}
    )
    (work / "app/run.sh").write_text("#!/bin/sh\n")
    os.chmod(work / "app/run.sh", 0o755)
    (work / "app/link").symlink_to("main.py")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "two", when=1_700_000_002)
    second = git(work, "rev-parse", "HEAD")
    git(work, "tag", "-a", "v2", "-m", "two", when=1_700_000_003)
    git(work, "checkout", "-q", "-b", "dev")
    write_tree(work, {"Dockerfile": "FROM dev\n"})
    git(work, "commit", "-q", "-am", "dev", when=1_700_000_004)
    git(work, "checkout", "-q", "main")
    write_tree(work, {"Dockerfile": "FROM three\n"})
    git(work, "commit", "-q", "-am", "three", when=1_700_000_005)
    bare = base / "repo.git"
    git(base, "clone", "-q", "--bare", str(work), str(bare))
    return {"url": f"file://{bare}", "path": str(bare), "first": first, "second": second}


@pytest.mark.parametrize(
    ("fragment", "dockerfile", "commit_time"),
    [
        ("", "FROM three\n", 1_700_000_005),
        ("#main", "FROM three\n", 1_700_000_005),
        ("#dev", "FROM dev\n", 1_700_000_004),
        ("#v1", "FROM one\n", 1_700_000_001),
        ("#v2", "FROM two\n", 1_700_000_002),
        ("#{first}", "FROM one\n", 1_700_000_001),
        ("#{second_short}", "FROM two\n", 1_700_000_002),
    ],
)
def test_git_context_at_a_ref(
    tmp_path: Path, repo: dict[str, str], fragment: str, dockerfile: str, commit_time: int
) -> None:
    fragment = fragment.format(first=repo["first"], second_short=repo["second"][:8])
    with context_from_git(repo["url"] + fragment, scratch=tmp_path) as context:
        assert context.dockerfile_text == dockerfile
        assert context.git_commit_time == commit_time
        assert context.git_commit is not None and len(context.git_commit) == 40
        assert ".git" not in paths(context)
    assert list(tmp_path.iterdir()) == []


def test_git_context_subdir_keeps_modes_and_symlinks(tmp_path: Path, repo: dict[str, str]) -> None:
    url = repo["path"] + "#v2:app"  # a plain path is a remote git accepts too
    with context_from_git(url, scratch=tmp_path) as context:
        assert context.dockerfile_text == "FROM app-one\n"
        assert context.git_commit == repo["second"]
        entries = {e.path: e for e in context.iter_files()}
        assert sorted(entries) == [".dockerignore", "Dockerfile", "link", "main.py", "run.sh"]
        assert entries["run.sh"].mode == 0o755 and entries["main.py"].mode == 0o644
        assert entries["link"].kind == "symlink" and entries["link"].link_target == "main.py"


def test_git_context_is_deterministic(tmp_path: Path, repo: dict[str, str]) -> None:
    digests = set()
    for _ in range(2):
        with context_from_git(repo["url"] + "#v2", scratch=tmp_path) as context:
            digests.add(context.write_tarball(io.BytesIO()))
    assert len(digests) == 1


def test_git_context_is_a_shallow_fetch(tmp_path: Path, repo: dict[str, str]) -> None:
    # A remote missing an old commit's tree still serves the tip of main at
    # depth 1; a full fetch would need that tree and fail.
    copy = tmp_path / "copy.git"
    git(tmp_path, "init", "-q", "--bare", str(copy))
    pack = subprocess.run(
        ["git", "-C", repo["path"], "pack-objects", "--all", "--stdout"],
        input=b"",
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["git", "-C", str(copy), "unpack-objects", "-q"], input=pack, check=True)
    for line in git(Path(repo["path"]), "show-ref").splitlines():
        sha, ref = line.split()
        git(copy, "update-ref", ref, sha)
    git(copy, "symbolic-ref", "HEAD", "refs/heads/main")
    tree = git(copy, "rev-parse", f"{repo['first']}^{{tree}}")
    (copy / "objects" / tree[:2] / tree[2:]).unlink()
    with context_from_git(f"file://{copy}#main", scratch=tmp_path / "s") as context:
        assert context.dockerfile_text == "FROM three\n"
    with pytest.raises(ContextError):  # the old commit itself cannot be checked out
        context_from_git(f"file://{copy}#v1", scratch=tmp_path / "s")


def test_git_errors_name_the_url(tmp_path: Path, repo: dict[str, str]) -> None:
    with pytest.raises(ContextError, match="no-such-ref"):
        context_from_git(repo["url"] + "#no-such-ref", scratch=tmp_path)
    with pytest.raises(ContextError, match="nope"):
        context_from_git(repo["url"] + "#main:nope", scratch=tmp_path)
    with pytest.raises(ContextError, match=r"missing\.git"):
        context_from_git(f"file://{tmp_path}/missing.git", scratch=tmp_path)
    with pytest.raises(ContextError, match=r"\.\."):
        context_from_git(repo["url"] + "#main:../..", scratch=tmp_path)
    with pytest.raises(ContextError, match="invalid"):
        context_from_git("--upload-pack=touch /tmp/pwned", scratch=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "is_git"),
    [
        ("https://github.com/o/r.git", True),
        ("https://github.com/o/r.git#main:sub", True),
        ("http://host/r.git#v1", True),
        ("https://host/archive.tar.gz", False),
        ("git://host/r", True),
        ("git@github.com:o/r.git", True),
        ("github.com/o/r", True),
        ("ssh://git@host/r.git", True),
        ("file:///tmp/r.git", False),
        (".", False),
        ("-", False),
    ],
)
def test_is_git_url(spec: str, is_git: bool) -> None:
    assert is_git_url(spec) is is_git


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("https://h/r.git", GitSource("https://h/r.git")),
        ("https://h/r.git#v1", GitSource("https://h/r.git", "v1")),
        ("https://h/r.git#v1:docker/app", GitSource("https://h/r.git", "v1", "docker/app")),
        ("https://h/r.git#:sub", GitSource("https://h/r.git", None, "sub")),
        ("git@h:o/r.git#dev", GitSource("git@h:o/r.git", "dev")),
        ("github.com/o/r", GitSource("https://github.com/o/r")),
    ],
)
def test_parse_git_url(url: str, want: GitSource) -> None:
    assert parse_git_url(url) == want


def test_credentials_in_git_urls_are_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ContextError) as err:
        context_from_git("https://user:s3cret@127.0.0.1:9/r.git", scratch=tmp_path)
    assert "s3cret" not in str(err.value)


def test_redact_url_inside_messages() -> None:
    message = "fatal: unable to access 'https://user:tok@host/r.git/': refused"
    assert redact_url(message) == "fatal: unable to access 'https://***@host/r.git/': refused"
    assert redact_url("git@host:o/r.git") == "git@host:o/r.git"
