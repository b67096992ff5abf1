"""Cache keys: every input of a step changes its key, and nothing else does."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from buildkit.cache.contents import FileDigests, hash_sources, hash_tree
from buildkit.cache.keys import base_key, is_filesystem_step, step_key
from buildkit.dockerfile.buildplan import DEFAULT_PATH, DEFAULT_SHELL, Step, StepState
from buildkit.dockerfile.instructions import (
    Add,
    Copy,
    Env,
    KeyValue,
    Label,
    Mount,
    Run,
    User,
    Workdir,
)
from buildkit.dockerfile.syntax import Heredoc
from buildkit.errors import ContextError
from buildkit.platforms import Platform

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chown)")
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
PARENT = base_key("scratch", platform=AMD64)
CONTEXT_ID = "sha256:" + "c" * 64
LOC = {"line": 3, "end_line": 3, "original": "RUN make"}

STATE = StepState(
    env=(("PATH", DEFAULT_PATH), ("GOFLAGS", "-mod=vendor")),
    args=(("VERSION", "1.0"),),
    environ=(("PATH", DEFAULT_PATH), ("GOFLAGS", "-mod=vendor"), ("VERSION", "1.0")),
    workdir="/src",
    user="",
    shell=DEFAULT_SHELL,
)


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=value)


MOUNTS = (
    Mount(
        type="cache",
        options=(kv("target", "/root/.cache"), kv("id", "go"), kv("sharing", "locked")),
    ),
    Mount(type="secret", options=(kv("id", "token"), kv("target", "/run/secrets/token"))),
    Mount(type="bind", options=(kv("target", "/ctx"), kv("source", "src"), kv("readonly", "true"))),
    Mount(type="tmpfs", options=(kv("target", "/tmp"), kv("size", "64m"))),
)
MOUNT_IDS = ("", "", CONTEXT_ID, "")
RUN = Run(**LOC, command=("make all",), shell=True, mounts=MOUNTS)


def run_key(
    inst: Run = RUN,
    state: StepState = STATE,
    platform: Platform = AMD64,
    mounts: tuple[str, ...] = MOUNT_IDS,
    parent: str = PARENT,
) -> str:
    return step_key(parent, Step(inst, state), platform, mounts=mounts)


def with_option(index: int, key: str, value: str | None) -> Run:
    """RUN with option `key` of mount `index` set to `value` (added, or removed when None)."""
    mount = MOUNTS[index]
    options = [o for o in mount.options if o.key != key]
    if value is not None:
        options.append(kv(key, value))
    mounts = list(MOUNTS)
    mounts[index] = dataclasses.replace(mount, options=tuple(options))
    return dataclasses.replace(RUN, mounts=tuple(mounts))


def env_with(name: str, value: str) -> StepState:
    environ = tuple((k, value if k == name else v) for k, v in STATE.environ)
    env = tuple((k, value if k == name else v) for k, v in STATE.env)
    args = tuple((k, value if k == name else v) for k, v in STATE.args)
    return dataclasses.replace(STATE, env=env, args=args, environ=environ)


RUN_CHANGES: list[tuple[str, Callable[[], str]]] = [
    ("parent", lambda: run_key(parent=base_key("scratch", platform=ARM64))),
    ("command", lambda: run_key(dataclasses.replace(RUN, command=("make test",)))),
    ("exec form", lambda: run_key(dataclasses.replace(RUN, command=("make all",), shell=False))),
    ("exec argv", lambda: run_key(dataclasses.replace(RUN, command=("make", "all"), shell=False))),
    ("env PATH", lambda: run_key(state=env_with("PATH", "/bin"))),
    ("env GOFLAGS", lambda: run_key(state=env_with("GOFLAGS", ""))),
    ("ARG value", lambda: run_key(state=env_with("VERSION", "1.1"))),
    (
        "new ARG in scope",
        lambda: run_key(
            state=dataclasses.replace(
                STATE,
                args=(*STATE.args, ("DEBUG", "1")),
                environ=(*STATE.environ, ("DEBUG", "1")),
            )
        ),
    ),
    (
        "env order",
        lambda: run_key(state=dataclasses.replace(STATE, environ=tuple(reversed(STATE.environ)))),
    ),
    ("user", lambda: run_key(state=dataclasses.replace(STATE, user="app"))),
    ("workdir", lambda: run_key(state=dataclasses.replace(STATE, workdir="/src/cmd"))),
    ("shell", lambda: run_key(state=dataclasses.replace(STATE, shell=("/bin/bash", "-c")))),
    ("platform", lambda: run_key(platform=ARM64)),
    ("platform variant", lambda: run_key(platform=Platform("linux", "amd64", "v3"))),
    ("network none", lambda: run_key(dataclasses.replace(RUN, network="none"))),
    ("network host", lambda: run_key(dataclasses.replace(RUN, network="host"))),
    ("security insecure", lambda: run_key(dataclasses.replace(RUN, security="insecure"))),
    (
        "heredoc body",
        lambda: run_key(
            dataclasses.replace(
                RUN, command=("<<EOF",), heredocs=(Heredoc(name="EOF", content="make\n"),)
            )
        ),
    ),
    ("bind mount source content", lambda: run_key(mounts=("", "", "sha256:" + "d" * 64, ""))),
    (
        "mount type",
        lambda: run_key(
            dataclasses.replace(
                RUN, mounts=(dataclasses.replace(MOUNTS[0], type="tmpfs"), *MOUNTS[1:])
            )
        ),
    ),
    ("no mounts", lambda: run_key(dataclasses.replace(RUN, mounts=()), mounts=())),
    ("cache mount seeded", lambda: run_key(mounts=("sha256:" + "e" * 64, "", CONTEXT_ID, ""))),
]
# Every option of every mount, changed, added or removed in turn.
for _index, _mount in enumerate(MOUNTS):
    for _option in _mount.options:
        RUN_CHANGES.append(
            (
                f"mount {_mount.type} {_option.key} changed",
                lambda i=_index, k=_option.key, v=_option.value: run_key(
                    with_option(i, k, v + "x")
                ),
            )
        )
        RUN_CHANGES.append(
            (
                f"mount {_mount.type} {_option.key} removed",
                lambda i=_index, k=_option.key: run_key(with_option(i, k, None)),
            )
        )
    for _key, _value in [
        ("uid", "1000"),
        ("gid", "1000"),
        ("mode", "0600"),
        ("required", "true"),
        ("env", "TOKEN"),
        ("from", "builder"),
        ("readwrite", "true"),
    ]:
        RUN_CHANGES.append(
            (
                f"mount {_mount.type} {_key} added",
                lambda i=_index, k=_key, v=_value: run_key(with_option(i, k, v)),
            )
        )


@pytest.mark.parametrize(("name", "changed"), RUN_CHANGES, ids=[n for n, _ in RUN_CHANGES])
def test_each_run_input_changes_the_key(name, changed):
    assert changed() != run_key(), name


def test_run_key_changes_are_all_distinct():
    keys = [changed() for _, changed in RUN_CHANGES]
    assert len(set(keys)) == len(keys)


RUN_SAME: list[tuple[str, Callable[[], str]]] = [
    ("line moved", lambda: run_key(dataclasses.replace(RUN, line=9, end_line=10))),
    ("original text", lambda: run_key(dataclasses.replace(RUN, original="RUN   make all"))),
    ("comment", lambda: run_key(dataclasses.replace(RUN, comment="build it"))),
    ("network default spelled out", lambda: run_key(dataclasses.replace(RUN, network="default"))),
    ("security sandbox spelled out", lambda: run_key(dataclasses.replace(RUN, security="sandbox"))),
    (
        "mount options reordered",
        lambda: run_key(
            dataclasses.replace(
                RUN,
                mounts=(
                    dataclasses.replace(MOUNTS[0], options=tuple(reversed(MOUNTS[0].options))),
                    *MOUNTS[1:],
                ),
            )
        ),
    ),
    # The config env (not the environ a RUN sees) only matters through environ.
    (
        "onbuild trigger",
        lambda: step_key(PARENT, Step(RUN, STATE, onbuild=True), AMD64, mounts=MOUNT_IDS),
    ),
]


@pytest.mark.parametrize(("name", "same"), RUN_SAME, ids=[n for n, _ in RUN_SAME])
def test_what_does_not_change_a_run_key(name, same):
    assert same() == run_key(), name


def test_shell_is_not_part_of_an_exec_form_key():
    exec_run = dataclasses.replace(RUN, command=("make", "all"), shell=False)
    assert run_key(exec_run) == run_key(
        exec_run, state=dataclasses.replace(STATE, shell=("/bin/bash", "-c"))
    )


def test_secret_content_is_never_keyed():
    # step_key takes no secret at all, and refuses an identity for one.
    with pytest.raises(ValueError, match="never part of a key"):
        run_key(mounts=("", "sha256:" + "f" * 64, CONTEXT_ID, ""))
    ssh = dataclasses.replace(RUN, mounts=(Mount(type="ssh", options=(kv("id", "default"),)),))
    with pytest.raises(ValueError, match="never part of a key"):
        run_key(ssh, mounts=("sha256:" + "f" * 64,))


def test_bind_mount_needs_its_source_identity():
    with pytest.raises(ValueError, match="identity of the mounted source"):
        run_key(mounts=())
    with pytest.raises(ValueError, match="mount identities"):
        run_key(mounts=("", ""))


def test_metadata_steps_keep_the_parent_key_and_later_runs_see_their_effect():
    for inst in (
        Env(**LOC, pairs=(kv("A", "1"),)),
        Label(**LOC, pairs=(kv("a", "b"),)),
        User(**LOC, user="app"),
    ):
        step = Step(inst, STATE)
        assert not is_filesystem_step(step)
        assert step_key(PARENT, step, AMD64) == PARENT
    # What ENV and USER change reaches the next RUN through its state.
    assert run_key(state=env_with("GOFLAGS", "x")) != run_key()
    assert run_key(state=dataclasses.replace(STATE, user="app")) != run_key()


def test_workdir_key_covers_path_user_and_parent():
    def key(path="app", state=STATE, parent=PARENT):
        return step_key(parent, Step(Workdir(**LOC, path=path), state), AMD64)

    assert is_filesystem_step(Step(Workdir(**LOC, path="x"), STATE))
    assert key() != PARENT
    assert key() == key("/src/app")  # resolved against the current WORKDIR
    assert key() == key(path="/src/app", state=dataclasses.replace(STATE, workdir="/"))
    assert key() != key("other")
    assert key() != key(state=dataclasses.replace(STATE, user="app"))
    assert key() != key(parent=base_key("scratch", platform=ARM64))


def test_base_keys():
    scratch = base_key("scratch", platform=AMD64)
    assert scratch != base_key("scratch", platform=ARM64)
    assert scratch != base_key("scratch", platform=AMD64, salt="zstd")
    image = base_key("image", platform=AMD64, manifest_digest="sha256:" + "1" * 64)
    assert image != base_key("image", platform=ARM64, manifest_digest="sha256:" + "1" * 64)
    assert image != base_key("image", platform=AMD64, manifest_digest="sha256:" + "2" * 64)
    assert image != scratch
    assert base_key("stage", platform=AMD64, stage_key=image) == image
    with pytest.raises(ValueError):
        base_key("image", platform=AMD64)
    with pytest.raises(ValueError):
        base_key("stage", platform=AMD64, stage_key="nope")
    with pytest.raises(ValueError):
        step_key("nope", Step(RUN, STATE), AMD64, mounts=MOUNT_IDS)


# ------------------------------------------------------------ COPY / ADD


def make_context(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("a")
    (root / "src" / "b.txt").write_text("b")
    (root / "src" / "notes.md").write_text("notes")
    (root / "app" / "cache").mkdir(parents=True)
    (root / "app" / "cache" / "junk").write_text("junk")
    (root / "app" / "main.py").write_text("print('hi')\n")
    (root / "app" / "x.log").write_text("log")
    (root / "app" / "pkg").mkdir()
    (root / "app" / "pkg" / "mod.py").write_text("")
    os.symlink("main.py", root / "app" / "link")
    (root / "README").write_text("readme")
    return root


COPY = Copy(
    line=5,
    end_line=5,
    original="COPY src/*.txt app out/",
    sources=("src/*.txt", "app"),
    dest="out/",
    excludes=("cache", "*.log"),
)


def copy_key(root: Path, spec: Copy | Add = COPY, state: StepState = STATE) -> str:
    return step_key(PARENT, Step(spec, state), AMD64, sources=hash_sources(spec, root))


def touch(path: Path, when: int = 1_600_000_000) -> None:
    os.utime(path, (when, when), follow_symlinks=False)


def rewrite_same_size(path: Path) -> None:
    info = os.stat(path)
    path.write_text("A")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


TREE_CHANGES: list[tuple[str, Callable[[Path], object]]] = [
    ("content", lambda r: (r / "src" / "a.txt").write_text("A!")),
    ("content, same size and mtime", lambda r: rewrite_same_size(r / "src" / "a.txt")),
    ("mode", lambda r: os.chmod(r / "src" / "a.txt", 0o600)),
    ("dir mode", lambda r: os.chmod(r / "app" / "pkg", 0o700)),
    (
        "symlink target",
        lambda r: (os.unlink(r / "app" / "link"), os.symlink("pkg/mod.py", r / "app" / "link")),
    ),
    (
        "file becomes symlink",
        lambda r: (os.unlink(r / "app" / "main.py"), os.symlink("pkg", r / "app" / "main.py")),
    ),
    ("new file matching the wildcard", lambda r: (r / "src" / "c.txt").write_text("c")),
    ("new file in a copied directory", lambda r: (r / "app" / "new").write_text("")),
    ("new empty directory", lambda r: (r / "app" / "empty").mkdir()),
    ("file removed", lambda r: os.unlink(r / "app" / "pkg" / "mod.py")),
    ("file renamed", lambda r: os.rename(r / "src" / "b.txt", r / "src" / "bb.txt")),
    (
        "hard link instead of copy",
        lambda r: (
            os.unlink(r / "app" / "pkg" / "mod.py"),
            os.link(r / "app" / "main.py", r / "app" / "pkg" / "mod.py"),
        ),
    ),
    ("fifo", lambda r: os.mkfifo(r / "app" / "fifo")),
]
if ROOT:
    TREE_CHANGES += [
        ("owner", lambda r: os.chown(r / "src" / "a.txt", 1000, 1000)),
        ("symlink owner", lambda r: os.chown(r / "app" / "link", 7, 7, follow_symlinks=False)),
    ]

TREE_SAME: list[tuple[str, Callable[[Path], object]]] = [
    ("mtime", lambda r: touch(r / "src" / "a.txt")),
    ("directory mtime", lambda r: touch(r / "app")),
    ("excluded file changes", lambda r: (r / "app" / "x.log").write_text("other log")),
    ("excluded file added", lambda r: (r / "app" / "y.log").write_text("")),
    ("file in excluded dir changes", lambda r: (r / "app" / "cache" / "junk").write_text("j2")),
    ("file in excluded dir added", lambda r: (r / "app" / "cache" / "more").write_text("")),
    ("file not matching the wildcard", lambda r: (r / "src" / "notes.md").write_text("more")),
    ("file outside the sources", lambda r: (r / "README").write_text("changed")),
    ("new file outside the sources", lambda r: (r / "LICENSE").write_text("MIT")),
    ("socket (COPY skips it)", lambda r: _bind_socket(r / "app" / "sock")),
]


def _bind_socket(path: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


@pytest.mark.parametrize(("name", "mutate"), TREE_CHANGES, ids=[n for n, _ in TREE_CHANGES])
def test_each_source_file_property_changes_the_key(tmp_path, name, mutate):
    root = make_context(tmp_path / "ctx")
    before = copy_key(root)
    mutate(root)
    assert copy_key(root) != before, name


@pytest.mark.parametrize(("name", "mutate"), TREE_SAME, ids=[n for n, _ in TREE_SAME])
def test_what_does_not_change_a_copy_key(tmp_path, name, mutate):
    root = make_context(tmp_path / "ctx")
    before = copy_key(root)
    mutate(root)
    assert copy_key(root) == before, name


def test_contexts_built_apart_have_the_same_key(tmp_path):
    one = make_context(tmp_path / "one")
    two = make_context(tmp_path / "two")
    for path in two.rglob("*"):
        touch(path, 1_000_000_000)
    assert copy_key(one) == copy_key(two)


SPEC_CHANGES: list[tuple[str, Callable[[Path], str]]] = [
    ("dest", lambda r: copy_key(r, dataclasses.replace(COPY, dest="out2/"))),
    (
        "dest file vs directory",
        lambda r: copy_key(r, dataclasses.replace(COPY, sources=("src/a.txt",), dest="out")),
    ),
    (
        "workdir under a relative dest",
        lambda r: copy_key(r, state=dataclasses.replace(STATE, workdir="/other")),
    ),
    ("--chown", lambda r: copy_key(r, dataclasses.replace(COPY, chown="1000:1000"))),
    ("--chmod", lambda r: copy_key(r, dataclasses.replace(COPY, chmod="0755"))),
    (
        "--exclude added",
        lambda r: copy_key(r, dataclasses.replace(COPY, excludes=(*COPY.excludes, "pkg"))),
    ),
    ("--exclude removed", lambda r: copy_key(r, dataclasses.replace(COPY, excludes=("cache",)))),
    ("--parents", lambda r: copy_key(r, dataclasses.replace(COPY, parents=True))),
    ("--link", lambda r: copy_key(r, dataclasses.replace(COPY, link=True))),
    (
        "sources as written",
        lambda r: copy_key(r, dataclasses.replace(COPY, sources=("src/a.txt", "src/b.txt", "app"))),
    ),
    (
        "heredoc content",
        lambda r: copy_key(
            r, dataclasses.replace(COPY, heredocs=(Heredoc(name="conf", content="x=1\n"),))
        ),
    ),
]


@pytest.mark.parametrize(("name", "changed"), SPEC_CHANGES, ids=[n for n, _ in SPEC_CHANGES])
def test_each_copy_flag_changes_the_key(tmp_path, name, changed):
    root = make_context(tmp_path / "ctx")
    assert changed(root) != copy_key(root), name


def test_copy_from_is_keyed_on_the_source_identity():
    spec = dataclasses.replace(COPY, from_="builder")
    step = Step(spec, STATE)
    one = step_key(PARENT, step, AMD64, sources="sha256:" + "1" * 64)
    two = step_key(PARENT, step, AMD64, sources="sha256:" + "2" * 64)
    assert one != two
    other_name = step_key(
        PARENT,
        Step(dataclasses.replace(spec, from_="b2"), STATE),
        AMD64,
        sources="sha256:" + "1" * 64,
    )
    assert other_name != one
    with pytest.raises(ValueError, match="identity of the sources"):
        step_key(PARENT, step, AMD64)


def test_heredoc_only_copy_needs_no_sources():
    spec = Copy(**LOC, sources=(), dest="/etc/conf", heredocs=(Heredoc(name="x", content="1\n"),))
    one = step_key(PARENT, Step(spec, STATE), AMD64)
    spec2 = dataclasses.replace(spec, heredocs=(Heredoc(name="x", content="2\n"),))
    assert step_key(PARENT, Step(spec2, STATE), AMD64) != one


def test_parents_keeps_the_path_below_the_pivot(tmp_path):
    root = make_context(tmp_path / "ctx")
    spec = dataclasses.replace(COPY, sources=("./src/./*.txt",), parents=True)
    pivot_moved = dataclasses.replace(spec, sources=("./src/*.txt",))
    assert hash_sources(spec, root) != hash_sources(pivot_moved, root)


ADD = Add(**LOC, sources=("app",), dest="/opt/")
URL_ADD = Add(**LOC, sources=("https://example.com/x.tar.gz",), dest="/opt/")
GIT_ADD = Add(**LOC, sources=("https://example.com/r.git#v1",), dest="/opt/")


@pytest.mark.parametrize(
    ("name", "base", "changed"),
    [
        ("--checksum", URL_ADD, dataclasses.replace(URL_ADD, checksum="sha256:" + "a" * 64)),
        ("--unpack", URL_ADD, dataclasses.replace(URL_ADD, unpack=True)),
        ("--unpack=false", ADD, dataclasses.replace(ADD, unpack=False)),
        ("--keep-git-dir", GIT_ADD, dataclasses.replace(GIT_ADD, keep_git_dir=True)),
        (
            "git ref",
            GIT_ADD,
            dataclasses.replace(GIT_ADD, sources=("https://example.com/r.git#v2",)),
        ),
        ("url", URL_ADD, dataclasses.replace(URL_ADD, sources=("https://example.com/y.tar.gz",))),
        ("--chown", ADD, dataclasses.replace(ADD, chown="1")),
        ("add vs copy", ADD, Copy(**LOC, sources=("app",), dest="/opt/")),
    ],
)
def test_each_add_flag_changes_the_key(tmp_path, name, base, changed):
    root = make_context(tmp_path / "ctx")
    assert copy_key(root, changed) != copy_key(root, base), name


def test_remote_add_is_keyed_on_what_the_caller_learned(tmp_path):
    url = URL_ADD.sources[0]
    plain = hash_sources(URL_ADD, tmp_path)
    one = hash_sources(URL_ADD, tmp_path, remote={url: "sha256:" + "1" * 64})
    two = hash_sources(URL_ADD, tmp_path, remote={url: "sha256:" + "2" * 64})
    assert len({plain, one, two}) == 3
    # Nothing is fetched: a URL alone gives the same key every time.
    assert hash_sources(URL_ADD, tmp_path) == plain


def test_missing_source_fails_as_copy_would(tmp_path):
    root = make_context(tmp_path / "ctx")
    with pytest.raises(ContextError):
        hash_sources(dataclasses.replace(COPY, sources=("nope",)), root)
    # An empty wildcard is allowed, and differs from a match.
    empty = hash_sources(dataclasses.replace(COPY, sources=("src/*.none",)), root)
    assert empty != hash_sources(dataclasses.replace(COPY, sources=("src/*.md",)), root)


def test_symlinked_source_is_followed(tmp_path):
    root = make_context(tmp_path / "ctx")
    os.symlink("src/a.txt", root / "alias")
    spec = dataclasses.replace(COPY, sources=("alias",))
    before = hash_sources(spec, root)
    (root / "src" / "a.txt").write_text("changed")
    assert hash_sources(spec, root) != before


def test_excluded_dir_with_an_exception_is_entered(tmp_path):
    root = make_context(tmp_path / "ctx")
    spec = dataclasses.replace(COPY, sources=("app",), excludes=("cache", "!cache/keep"))
    before = hash_sources(spec, root)
    (root / "app" / "cache" / "junk").write_text("still excluded")
    assert hash_sources(spec, root) == before
    (root / "app" / "cache" / "keep").write_text("included")
    assert hash_sources(spec, root) != before


def test_file_digest_cache_is_used_and_sees_changes(tmp_path):
    root = make_context(tmp_path / "ctx")
    cache = FileDigests()
    first = hash_sources(COPY, root, cache=cache)
    assert cache.hits == 0
    assert hash_sources(COPY, root, cache=cache) == first
    assert cache.hits > 0
    rewrite_same_size(root / "src" / "a.txt")  # same size and mtime: ctime moves
    assert hash_sources(COPY, root, cache=cache) == hash_sources(COPY, root)
    assert hash_sources(COPY, root, cache=cache) != first


def test_hash_tree_for_bind_mounts(tmp_path):
    root = make_context(tmp_path / "ctx")
    app = hash_tree(root, "app")
    assert app == hash_tree(root, "/app/")
    assert app != hash_tree(root, "src")
    assert hash_tree(root) != app
    (root / "app" / "cache" / "junk").write_text("no exclusions here")
    assert hash_tree(root, "app") != app
    with pytest.raises(ContextError):
        hash_tree(root, "missing")


# ------------------------------------------------------------ determinism

_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from tests.buildkit.cache.test_keys import copy_key, run_key
print(json.dumps([run_key(), copy_key(Path({root!r}))]))
"""


def test_same_inputs_same_key_across_processes(tmp_path):
    root = make_context(tmp_path / "ctx")
    here = [run_key(), copy_key(root)]
    repo = str(Path(__file__).resolve().parents[3])
    script = _SCRIPT.format(tests=repo, root=str(root))
    seen = []
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        )
        seen.append(json.loads(out.stdout))
    assert seen == [here, here, here]


def test_known_keys_are_pinned():
    # What a key covers and how it is encoded is a format shared by every
    # machine on a store: changing it must bump KEY_VERSION (and these values).
    assert PARENT == "sha256:e98197eab67c42b34c2c337adaa44249bbd9f5762ecb738427154c9537968aab"
    assert run_key() == "sha256:f7356620bf5b4b4267ff729ba9c829e917d5f8a9de68face0797394947dbca48"
