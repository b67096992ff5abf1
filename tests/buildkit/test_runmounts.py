"""RUN --mount preparation against real directories, files, locks and sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from buildkit.dockerfile.instructions import Mount, Run, parse_dockerfile
from buildkit.errors import DockerfileError
from buildkit.runmounts import (
    MountSources,
    PreparedMounts,
    SecretSource,
    SshSource,
    parse_size,
    prepare_mounts,
)
from buildkit.sandbox import BindMount, TmpfsMount
from buildkit.secrets import SecretMasker, mask_variants

SECRET = "hunter2-s3cr3t"
ROOT = os.geteuid() == 0


def run_of(*mounts: str, blank_lines: int = 2) -> Run:
    """A RUN with these --mount values, on line `blank_lines + 2` of a Dockerfile."""
    flags = " ".join(f"'--mount={m}'" if " " in m else f"--mount={m}" for m in mounts)
    text = "FROM scratch\n" + "\n" * blank_lines + f"RUN {flags} true\n"
    (stage,) = parse_dockerfile(text).stages
    (run,) = stage.instructions
    assert isinstance(run, Run)
    return run


@pytest.fixture
def sources(tmp_path: Path) -> MountSources:
    context = tmp_path / "context"
    (context / "src").mkdir(parents=True)
    (context / "src/main.c").write_text("int main;\n")
    (context / "escape").symlink_to("../../../../../etc")  # resolved inside the context
    stage = tmp_path / "stage-build"
    (stage / "out").mkdir(parents=True)
    (stage / "out/app").write_text("binary\n")
    (stage / "out/app").chmod(0o755)
    stages = {"build": stage, "0": stage}

    @contextlib.contextmanager
    def stage_root(name: str) -> Iterator[Path]:
        yield stages[name]  # KeyError for an unknown name

    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    agent = tmp_path / "agent.sock"
    return MountSources(
        context_root=context,
        stage_root=stage_root,
        secrets={
            "tok": SecretSource("tok", file=secret_file),
            "envtok": SecretSource("envtok", env_value=SECRET),
            "nul": SecretSource("nul", env_value="a\0" + SECRET),
        },
        ssh={"default": SshSource("default", agent)},
        cache_root=tmp_path / "cache-mounts",
        scratch=tmp_path / "scratch",
    )


@contextlib.contextmanager
def prepared(sources: MountSources, *mounts: str, **kw: object) -> Iterator[PreparedMounts]:
    opts: dict = {"uid": 0, "gid": 0, **kw}
    with prepare_mounts(run_of(*mounts), sources, **opts) as prep:
        yield prep


def only_bind(prep: PreparedMounts) -> BindMount:
    (mount,) = prep.mounts
    assert isinstance(mount, BindMount)
    return mount


def scratch_is_empty(sources: MountSources) -> bool:
    return not sources.scratch.exists() or not any(sources.scratch.iterdir())


def error_of(sources: MountSources, *mounts: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as info, prepared(sources, *mounts):
        pass
    assert scratch_is_empty(sources)
    return info.value


# ---------------------------------------------------------------- bind


def test_bind_defaults_to_the_whole_context_read_only(sources: MountSources) -> None:
    with prepared(sources, "target=/src") as prep:
        assert only_bind(prep) == BindMount(str(sources.context_root), "/src", readonly=True)
        assert prep.env == () and prep.secrets == ()


def test_bind_source_from_a_stage(sources: MountSources) -> None:
    with prepared(sources, "type=bind,from=build,source=out/app,target=/usr/bin/app") as prep:
        mount = only_bind(prep)
    assert Path(mount.source).read_text() == "binary\n"
    assert mount.target == "/usr/bin/app" and mount.readonly


def test_bind_source_symlinks_stay_inside_the_root(sources: MountSources) -> None:
    # context/escape -> ../../../../../etc resolves to <context>/etc, which is not there.
    err = error_of(sources, "source=escape/passwd,target=/x")
    assert "'escape/passwd' not found in the build context" in str(err)
    (sources.context_root / "etc").mkdir()
    (sources.context_root / "etc/passwd").write_text("inside\n")
    with prepared(sources, "source=escape/passwd,target=/x") as prep:
        assert only_bind(prep).source == str(sources.context_root / "etc/passwd")


def test_relative_target_joins_the_workdir(sources: MountSources) -> None:
    with prepared(sources, "target=src,source=src", workdir="/app") as prep:
        assert only_bind(prep).target == "/app/src"


def test_rw_bind_writes_go_to_a_throwaway_copy(sources: MountSources) -> None:
    main = sources.context_root / "src/main.c"
    os.chmod(main, 0o640)
    with prepared(sources, "source=src,target=/src,rw") as prep:
        mount = only_bind(prep)
        copy = Path(mount.source)
        assert not mount.readonly
        assert copy != sources.context_root / "src"
        assert (copy / "main.c").read_text() == "int main;\n"
        assert stat.S_IMODE(os.stat(copy / "main.c").st_mode) == 0o640
        (copy / "main.c").write_text("changed")
        (copy / "new").write_text("new")
    assert main.read_text() == "int main;\n"
    assert not (sources.context_root / "src/new").exists()
    assert not copy.exists()
    assert scratch_is_empty(sources)


def test_rw_bind_of_a_stage_leaves_the_stage_alone(sources: MountSources) -> None:
    with prepared(sources, "from=build,source=out,target=/out,readwrite=true") as prep:
        copy = Path(only_bind(prep).source)
        (copy / "app").write_text("overwritten")
    assert (sources.context_root.parent / "stage-build/out/app").read_text() == "binary\n"


@pytest.mark.parametrize(
    ("spec", "readonly"),
    [("target=/s,ro", True), ("target=/s,rw,ro", True), ("target=/s,ro,rw", False),
     ("target=/s,readonly=false", False), ("target=/s,readwrite=false", True)],
)  # fmt: skip
def test_bind_last_of_ro_and_rw_wins(sources: MountSources, spec: str, readonly: bool) -> None:
    with prepared(sources, spec) as prep:
        assert only_bind(prep).readonly is readonly


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=bind,source=src", "bind mount needs a target"),
        ("type=cache", "cache mount needs a target"),
        ("type=tmpfs", "tmpfs mount needs a target"),
        ("target=/", "cannot mount over /"),
        ("target=/x,from=nowhere", "from='nowhere': no stage or image"),
        ("target=/x,source=missing", "'missing' not found in the build context"),
        ("target=/x,from=build,source=nope", "'nope' not found in 'build'"),
        ("type=tmpfs,target=/t,size=1.2.3m", "invalid value for size"),
        ("type=cache,target=/c,from=nowhere", "from='nowhere'"),
        ("type=cache,target=/c,from=build,source=out/app", "is not a directory"),
    ],
)
def test_bad_mounts_name_the_file_and_line(sources: MountSources, spec: str, message: str) -> None:
    err = error_of(sources, spec)
    assert message in err.message
    assert (err.path, err.line, err.instruction) == ("Dockerfile", 4, "RUN")
    assert str(err).startswith("Dockerfile:4: RUN: ")


def test_unknown_type_after_expansion(sources: MountSources) -> None:
    run = replace(run_of("target=/x"), mounts=(Mount(type="volume", options=()),))
    with (
        pytest.raises(DockerfileError, match="unsupported mount type 'volume'") as info,
        prepare_mounts(run, sources, uid=0, gid=0, path="app/Dockerfile"),
    ):
        pass
    assert str(info.value).startswith("app/Dockerfile:4: RUN: ")


# ---------------------------------------------------------------- cache


def test_cache_persists_across_builds_by_id(sources: MountSources) -> None:
    with prepared(sources, "type=cache,target=/root/.cache") as prep:
        mount = only_bind(prep)
        assert not mount.readonly
        Path(mount.source, "hit").write_text("1")
    with prepared(sources, "type=cache,target=/root/.cache") as prep:
        again = only_bind(prep)
    assert again.source == mount.source
    assert Path(again.source, "hit").read_text() == "1"
    # The id, not the target, names the cache.
    with prepared(sources, "type=cache,id=other,target=/root/.cache") as prep:
        assert only_bind(prep).source != mount.source
    with prepared(sources, "type=cache,id=/root/.cache,target=/elsewhere,ro") as prep:
        same = only_bind(prep)
        assert same.source == mount.source and same.readonly
    assert scratch_is_empty(sources)


def test_new_cache_gets_uid_gid_mode(sources: MountSources) -> None:
    with prepared(sources, "type=cache,target=/c") as prep:
        info = os.stat(only_bind(prep).source)
    assert stat.S_IMODE(info.st_mode) == 0o755
    if ROOT:
        assert (info.st_uid, info.st_gid) == (0, 0)
    with prepared(sources, "type=cache,target=/c2,uid=1000,gid=1001,mode=0700") as prep:
        info = os.stat(only_bind(prep).source)
    assert stat.S_IMODE(info.st_mode) == 0o700
    if ROOT:
        assert (info.st_uid, info.st_gid) == (1000, 1001)


def test_cache_seeded_from_a_stage(sources: MountSources) -> None:
    with prepared(sources, "type=cache,target=/c,from=build,source=out") as prep:
        data = Path(only_bind(prep).source)
        assert (data / "app").read_text() == "binary\n"
        (data / "app").write_text("updated")
    stage_app = sources.context_root.parent / "stage-build/out/app"
    assert stage_app.read_text() == "binary\n"
    stage_app.write_text("rebuilt")  # an existing cache is not seeded again
    with prepared(sources, "type=cache,target=/c,from=build,source=out") as prep:
        assert (Path(only_bind(prep).source) / "app").read_text() == "updated"


def test_cache_source_without_from_is_a_path_in_the_cache(sources: MountSources) -> None:
    with prepared(sources, "type=cache,id=k,target=/c,source=sub/dir") as prep:
        mount = only_bind(prep)
    assert mount.source.endswith("/data/sub/dir") and Path(mount.source).is_dir()


class Holder:
    """Holds a cache mount in another thread until told to let go."""

    def __init__(self, sources: MountSources, spec: str) -> None:
        self.sources, self.spec = sources, spec
        self.entered = threading.Event()
        self.release = threading.Event()
        self.source = ""
        self.entered_at = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with prepared(self.sources, self.spec) as prep:
            self.source = only_bind(prep).source
            self.entered_at = time.monotonic()
            self.entered.set()
            self.release.wait(10)

    def done(self) -> None:
        self.release.set()
        self.thread.join(10)


def test_locked_cache_makes_the_second_user_wait(sources: MountSources) -> None:
    spec = "type=cache,id=apt,target=/var/cache/apt,sharing=locked"
    first = Holder(sources, spec)
    assert first.entered.wait(5)
    second = Holder(sources, spec)
    assert not second.entered.wait(0.5)  # blocked while the first holds it
    released_at = time.monotonic()
    first.done()
    assert second.entered.wait(5)
    assert second.entered_at >= released_at
    assert second.source == first.source
    second.done()


def test_private_cache_gives_a_concurrent_user_another_dir(sources: MountSources) -> None:
    spec = "type=cache,id=p,target=/p,sharing=private"
    first = Holder(sources, spec)
    assert first.entered.wait(5)
    second = Holder(sources, spec)
    assert second.entered.wait(5)  # no waiting
    assert second.source != first.source
    first.done()
    second.done()
    with prepared(sources, spec) as prep:  # free again: the first instance
        assert only_bind(prep).source == first.source


def test_shared_cache_users_share_one_dir(sources: MountSources) -> None:
    spec = "type=cache,id=s,target=/s"
    first = Holder(sources, spec)
    assert first.entered.wait(5)
    second = Holder(sources, spec)
    assert second.entered.wait(5)
    assert second.source == first.source
    first.done()
    second.done()


# ---------------------------------------------------------------- tmpfs


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("1024", 1024), ("64m", 64 << 20), ("64M", 64 << 20), ("1g", 1 << 30),
     ("1GiB", 1 << 30), ("1.5k", 1536), ("10 kb", 10240), ("2t", 2 << 40), ("1p", 1 << 50)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "-1", "1x", "1.2.3", "1 2"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_tmpfs(sources: MountSources) -> None:
    with prepared(sources, "type=tmpfs,target=/t", "type=tmpfs,dst=/u,size=64m") as prep:
        assert prep.mounts == (TmpfsMount("/t", 0), TmpfsMount("/u", 64 << 20))


# ---------------------------------------------------------------- secret


def test_secret_file_default_target_mode_owner(sources: MountSources) -> None:
    with prepared(sources, "type=secret,id=tok") as prep:
        mount = only_bind(prep)
        file = Path(mount.source)
        info = os.stat(file)
        assert mount.target == "/run/secrets/tok" and mount.readonly
        assert file.read_text() == SECRET + "\n"
        assert stat.S_IMODE(info.st_mode) == 0o400
        if ROOT:
            assert (info.st_uid, info.st_gid) == (0, 0)
        assert stat.S_IMODE(os.stat(file.parent).st_mode) == 0o700
        if ROOT:  # on a tmpfs of its own: the value never reaches a disk
            assert os.stat(file.parent).st_dev != os.stat(file.parent.parent).st_dev
            assert str(file.parent) in Path("/proc/self/mountinfo").read_text()
        assert prep.env == ()
        assert prep.secrets == (SECRET.encode(),)
        assert SECRET not in repr(prep)
    assert not file.exists()
    assert scratch_is_empty(sources)
    assert str(file.parent) not in Path("/proc/self/mountinfo").read_text()


def test_secret_options(sources: MountSources) -> None:
    with prepared(sources, "type=secret,source=tok,target=/etc/tok,uid=1000,gid=1001,mode=0440") as prep:  # fmt: skip
        mount = only_bind(prep)
        info = os.stat(mount.source)
        assert mount.target == "/etc/tok"
        assert stat.S_IMODE(info.st_mode) == 0o440
        if ROOT:
            assert (info.st_uid, info.st_gid) == (1000, 1001)


def test_secret_id_from_the_target(sources: MountSources) -> None:
    with prepared(sources, "type=secret,target=/root/tok") as prep:
        assert Path(only_bind(prep).source).read_text() == SECRET + "\n"


def test_secret_as_env(sources: MountSources) -> None:
    with prepared(sources, "type=secret,id=envtok,env=TOKEN") as prep:
        assert prep.mounts == ()
        assert prep.env == (("TOKEN", SECRET),)
        assert prep.secrets == (SECRET.encode(),)
        assert SECRET not in repr(prep)
    with prepared(sources, "type=secret,id=envtok,env=TOKEN,target=/t") as prep:
        assert prep.env == (("TOKEN", SECRET),)
        assert Path(only_bind(prep).source).read_text() == SECRET


def test_missing_secret_required_is_an_error_naming_it(sources: MountSources) -> None:
    err = error_of(sources, "type=secret,id=npmrc,required")
    assert "secret 'npmrc' is required" in str(err)
    assert err.line == 4
    err = error_of(sources, "type=secret,id=npmrc,required=true,env=X")
    assert "'npmrc'" in str(err)


def test_missing_secret_not_required_is_skipped(sources: MountSources) -> None:
    with prepared(sources, "type=secret,id=npmrc", "type=secret,id=x,env=X,required=false") as p:
        assert p == PreparedMounts()


def test_secret_values_never_in_errors(sources: MountSources, tmp_path: Path) -> None:
    err = error_of(sources, "type=secret,id=nul,env=TOKEN")
    assert "NUL" in str(err) and SECRET not in str(err) and SECRET not in repr(err)
    # A secret already prepared when a later mount fails: its file goes too.
    err = error_of(sources, "type=secret,id=tok", "type=secret,id=gone,required")
    assert SECRET not in str(err)
    big = replace(sources, secrets={"big": SecretSource("big", env_value=SECRET * 40000)})
    err = error_of(big, "type=secret,id=big")
    assert "larger than" in str(err) and SECRET not in str(err)
    missing = replace(sources, secrets={"f": SecretSource("f", file=tmp_path / "nope")})
    err = error_of(missing, "type=secret,id=f")
    assert "secret 'f': cannot read" in str(err)


# ---------------------------------------------------------------- ssh


@contextlib.contextmanager
def echo_agent(path: Path) -> Iterator[None]:
    """A stand-in agent: answers every message with "agent:" + the message."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    stop = False

    def serve() -> None:
        while not stop:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(b"agent:" + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop = True
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


def test_ssh_relays_to_the_agent(sources: MountSources) -> None:
    with echo_agent(sources.ssh["default"].socket), prepared(sources, "type=ssh", "type=ssh,id=default,target=/a,mode=0666") as prep:  # fmt: skip
        first, second = prep.mounts
        assert isinstance(first, BindMount) and isinstance(second, BindMount)
        assert first.target == "/run/buildkit/ssh_agent.0" and second.target == "/a"
        assert prep.env == (("SSH_AUTH_SOCK", "/run/buildkit/ssh_agent.0"),)
        info = os.stat(first.source)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(second.source).st_mode) == 0o666
        assert first.source != str(sources.ssh["default"].socket)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(first.source)
            client.sendall(b"hello")
            assert client.recv(100) == b"agent:hello"
    assert not Path(first.source).exists()
    assert scratch_is_empty(sources)


def test_ssh_missing(sources: MountSources) -> None:
    err = error_of(sources, "type=ssh,id=gitlab,required=true")
    assert "ssh agent 'gitlab' is required" in str(err) and err.line == 4
    with prepared(sources, "type=ssh,id=gitlab") as prep:
        assert prep == PreparedMounts()


def test_everything_temporary_goes_on_error_in_the_body(sources: MountSources) -> None:
    with (
        pytest.raises(RuntimeError),
        prepared(
            sources, "type=secret,id=tok", "target=/s,rw", "type=cache,target=/c,sharing=locked"
        ),
    ):
        assert not scratch_is_empty(sources)
        raise RuntimeError("step failed")
    assert scratch_is_empty(sources)
    # The locked cache was released.
    with prepared(sources, "type=cache,target=/c,sharing=locked"):
        pass


# ---------------------------------------------------------------- masking


def masked(secrets: list[bytes], chunks: list[bytes]) -> bytes:
    out: list[bytes] = []
    masker = SecretMasker(out.append, secrets)
    for chunk in chunks:
        masker(chunk)
    masker.flush()
    return b"".join(out)


@pytest.mark.parametrize(
    ("secrets", "text", "want"),
    [
        ([b"abc"], b"xabcx abc", b"x****x ****"),
        ([b"abc", b"abcdef"], b"abcdef abc", b"**** ****"),
        ([b""], b"abc", b"abc"),
        ([], b"abc", b"abc"),
        ([b"aa"], b"aaa", b"****a"),
        ([b"s3cr3t\n", b"s3cr3t"], b"s3cr3t\ns3cr3t.", b"********."),
    ],
)
def test_masker_every_split(secrets: list[bytes], text: bytes, want: bytes) -> None:
    assert masked(secrets, [text]) == want
    for cut in range(len(text) + 1):
        assert masked(secrets, [text[:cut], text[cut:]]) == want, cut
    assert masked(secrets, [bytes([b]) for b in text]) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [(b"tok\n", (b"tok",)), (b"tok\r\n", (b"tok",)), (b"tok", (b"tok",)), (b"a\nb\n", (b"a\nb",)),
     (b"\n", ()), (b"", ())],
)  # fmt: skip
def test_mask_variants(value: bytes, want: tuple[bytes, ...]) -> None:
    assert mask_variants(value) == want


def test_masker_holds_back_only_a_possible_prefix() -> None:
    out: list[bytes] = []
    masker = SecretMasker(out.append, [b"secret"])
    masker(b"hello sec")
    assert b"".join(out) == b"hell"  # "o sec" may start "secret"
    masker(b"ret done")
    assert b"".join(out) == b"hello ****"  # the last 5 bytes wait for more
    masker.flush()
    assert b"".join(out) == b"hello **** done"


# ---------------------------------------------------------------- end to end


@pytest.mark.sandbox
@pytest.mark.timeout(120)
def test_step_sees_mounts_and_its_layer_keeps_none(sources: MountSources, tmp_path: Path) -> None:
    from buildkit.sandbox import NamespaceSandbox, StepSpec
    from tests.fixtures.rootfs import busybox_rootfs

    if not ROOT:
        pytest.skip("the namespace sandbox needs root")
    if "overlay" not in Path("/proc/filesystems").read_text():
        pytest.skip("no overlayfs")
    sandbox = NamespaceSandbox(scratch_root=tmp_path / "sandbox")
    lower = busybox_rootfs("amd64")
    mounts = (
        "type=secret,id=tok",
        "type=secret,id=envtok,env=TOKEN",
        "type=cache,target=/root/.cache",
        "source=src,target=/src",
        "type=tmpfs,target=/scratch",
    )

    def step(n: int, script: str) -> tuple[int, bytes, Path]:
        upper, work = tmp_path / f"upper{n}", tmp_path / f"work{n}"
        upper.mkdir()
        work.mkdir()
        out: list[bytes] = []
        with prepared(sources, *mounts) as prep:
            masker = SecretMasker(out.append, prep.secrets)
            spec = StepSpec(
                lower_dirs=(str(lower),), upper_dir=str(upper), work_dir=str(work),
                argv=("/bin/sh", "-c", script),
                env=("PATH=/bin", *(f"{k}={v}" for k, v in prep.env)),
                mounts=prep.mounts,
            )  # fmt: skip
            result = sandbox.run(spec, masker)
            masker.flush()
        return result.exit_code, b"".join(out), upper

    code, out, upper = step(
        1,
        "cat /run/secrets/tok; echo env=$TOKEN; "
        "test $(cat /run/secrets/tok) = $TOKEN && echo SAME; "
        "echo first > /root/.cache/hit; cat /src/main.c; "
        "touch /src/new 2>/dev/null || echo SRC-RO; "
        "touch /run/secrets/tok 2>/dev/null || echo SECRET-RO; "
        "echo junk > /scratch/junk",
    )
    assert code == 0, out
    text = out.decode()
    assert SECRET not in text
    assert text == "****\nenv=****\nSAME\nint main;\nSRC-RO\nSECRET-RO\n"
    # The layer: nothing of the mounts, not even their mount points.
    assert list(upper.rglob("*")) == []

    code, out, upper = step(2, "cat /root/.cache/hit; ls /scratch | wc -l; ls /run/secrets")
    assert code == 0, out
    assert out.decode().split() == ["first", "0", "tok"]
    assert list(upper.rglob("*")) == []
    assert scratch_is_empty(sources)
