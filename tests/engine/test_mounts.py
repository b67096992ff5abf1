"""RUN --mount through real builds: cache, bind, tmpfs, secret and ssh.

What a mount holds is the step's while it runs and never the image's: no
target, no content and no secret reaches a layer, a record or a log line.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildkit.errors import BuildStepError, DockerfileError
from buildkit.events import Recorder
from buildkit.platforms import host_platform, parse_platform
from buildkit.secrets import SecretSource, SshSource
from tests.engine.conftest import AMD64, BASE, Built, build, outcomes

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

ROOT = BASE.replace("FROM scratch", "FROM scratch AS base")


def rootfs(built: Built, tmp_path: Path, name: str = "root") -> Path:
    return built.rootfs(tmp_path / name)


def no_mount_leftovers(root: Path, *targets: str) -> None:
    """The busybox root has no /run: mount targets must not appear in the image."""
    assert not (root / "run").exists()
    for target in targets:
        assert not (root / target.lstrip("/")).exists(), target


# ---------------------------------------------------------------- cache


def test_a_cache_mount_persists_across_builds_and_stays_out_of_the_image(
    tmp_path: Path,
) -> None:
    count = BASE + "RUN --mount=type=cache,target=/var/cache/c echo {} >> /var/cache/c/n && wc -l < /var/cache/c/n > /count\n"  # fmt: skip
    first = build(tmp_path, count.replace("{}", "one"))
    assert (rootfs(first, tmp_path) / "count").read_text().strip() == "1"
    second = build(tmp_path, count.replace("{}", "two"))
    root = rootfs(second, tmp_path, "root2")
    assert (root / "count").read_text().strip() == "2"
    assert (root / "var").is_dir() and not (root / "var/cache").exists()
    names = set(second.layer_members(-1))
    assert names == {"count"}


def test_cache_mount_owner_and_mode_of_a_new_cache(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "RUN --mount=type=cache,target=/c,uid=1000,gid=1001,mode=0750 "
        "stat -c '%u %g %a' /c > /owner\n",
    )
    assert (rootfs(built, tmp_path) / "owner").read_text() == "1000 1001 750\n"
    no_mount_leftovers(rootfs(built, tmp_path, "root2"), "/c")


#: Two stages at once, each with the cache `c` ({sharing}) and the shared `meet`:
#: each leaves its mark in `c`, meets the other, then lists `c`.
SHARING = (
    ROOT
    + "".join(
        f"FROM base AS {me}\n"
        "RUN --mount=type=cache,target=/c,id=c,sharing={sharing} "
        "--mount=type=cache,target=/meet,id=meet "
        f"touch /c/{me} /meet/{me} && i=0 && while [ ! -e /meet/{other} ]; do "
        'sleep 0.05; i=$((i+1)); [ "$i" -lt 200 ] || exit 9; done && ls /c > /seen\n'
        for me, other in (("one", "two"), ("two", "one"))
    )
    + "FROM scratch\nCOPY --from=one /seen /one\nCOPY --from=two /seen /two\n"
)


def test_a_shared_cache_is_one_directory_for_concurrent_steps(tmp_path: Path) -> None:
    built = build(tmp_path, SHARING.replace("{sharing}", "shared"), jobs=2)
    root = rootfs(built, tmp_path)
    assert (root / "one").read_text().split() == ["one", "two"]
    assert (root / "two").read_text().split() == ["one", "two"]


def test_a_private_cache_gives_concurrent_steps_their_own_directory(tmp_path: Path) -> None:
    built = build(tmp_path, SHARING.replace("{sharing}", "private"), jobs=2)
    root = rootfs(built, tmp_path)
    assert (root / "one").read_text().split() == ["one"]
    assert (root / "two").read_text().split() == ["two"]


def test_a_locked_cache_is_used_by_one_step_at_a_time(tmp_path: Path) -> None:
    # Both steps run at once (jobs=2); `mkdir busy` fails if both hold the cache.
    dockerfile = ROOT + "".join(
        f"FROM base AS {me}\n"
        "RUN --mount=type=cache,target=/c,id=c,sharing=locked "
        f"mkdir /c/busy && sleep 0.5 && echo {me} >> /c/log && rmdir /c/busy && "
        "cat /c/log > /seen\n"
        for me in ("one", "two")
    ) + "FROM scratch\nCOPY --from=one /seen /one\nCOPY --from=two /seen /two\n"  # fmt: skip
    built = build(tmp_path, dockerfile, jobs=2)
    root = rootfs(built, tmp_path)
    seen = sorted([(root / "one").read_text().split(), (root / "two").read_text().split()])
    # The same directory, one after the other: the second saw the first's line.
    assert seen in ([["one"], ["one", "two"]], [["two"], ["two", "one"]])


# ---------------------------------------------------------------- bind and tmpfs


def test_bind_mounts_of_the_context_and_of_a_stage_are_read_only(tmp_path: Path) -> None:
    dockerfile = ROOT + (
        "FROM base AS data\nRUN mkdir /data && echo from-stage > /data/d\n"
        "FROM base\n"
        "RUN --mount=type=bind,source=dir,target=/m cat /m/f > /ctx && "
        "! touch /m/new 2> /dev/null && ! sh -c 'echo x > /m/f' 2> /dev/null\n"
        "RUN --mount=type=bind,from=data,source=/data,target=/s cat /s/d > /stage && "
        "! touch /s/new 2> /dev/null\n"
    )
    built = build(tmp_path, dockerfile, {"dir/f": "from-context\n"})
    root = rootfs(built, tmp_path)
    assert (root / "ctx").read_text() == "from-context\n"
    assert (root / "stage").read_text() == "from-stage\n"
    no_mount_leftovers(root, "/m", "/s", "/data")
    assert (tmp_path / "context/dir/f").read_text() == "from-context\n"
    assert sorted(p.name for p in (tmp_path / "context/dir").iterdir()) == ["f"]


def test_writes_to_a_rw_bind_mount_are_thrown_away(tmp_path: Path) -> None:
    dockerfile = BASE + (
        "RUN --mount=type=bind,source=dir,target=/m,rw "
        "echo changed > /m/f && touch /m/new && cat /m/f > /saw\n"
        "RUN --mount=type=bind,source=dir,target=/m ls /m > /after && cat /m/f >> /after\n"
    )
    built = build(tmp_path, dockerfile, {"dir/f": "original\n"})
    root = rootfs(built, tmp_path)
    assert (root / "saw").read_text() == "changed\n"
    assert (root / "after").read_text() == "f\noriginal\n"
    no_mount_leftovers(root, "/m")
    for n in (-1, -2):
        assert set(built.layer_members(n)) <= {"saw", "after"}
    context = tmp_path / "context/dir"
    assert sorted(p.name for p in context.iterdir()) == ["f"]
    assert (context / "f").read_text() == "original\n"


def test_a_tmpfs_mount_is_a_fresh_tmpfs_whose_files_stay_out_of_the_layer(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "RUN --mount=type=tmpfs,target=/scratch,size=1m "
        "echo x > /scratch/f && grep ' /scratch tmpfs ' /proc/mounts > /mounted && "
        "ls -A /scratch > /listed\n",
    )
    root = rootfs(built, tmp_path)
    assert "size=1024k" in (root / "mounted").read_text()
    assert (root / "listed").read_text() == "f\n"  # fresh: only what this step wrote
    no_mount_leftovers(root, "/scratch")
    assert set(built.layer_members(-1)) == {"mounted", "listed"}


# ---------------------------------------------------------------- secrets

SECRET = "hunter2-Sekr1t-Valu3"
ROT13 = codecs.encode(SECRET, "rot13")


def rot13_step(path: str) -> str:
    return f"tr a-zA-Z n-za-mN-ZA-M < {path}"


def every_byte_under(home: Path) -> Iterator[tuple[Path, bytes]]:
    """Every regular file under `home` (gzip'd ones also decompressed)."""
    for path in sorted(home.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        yield path, data
        if data[:2] == b"\x1f\x8b":
            yield path, gzip.decompress(data)


def assert_secret_nowhere(built: Built) -> None:
    value = SECRET.encode()
    # The store's blobs (layers, configs, manifests), its cache records, the
    # unpacked snapshots and whatever else FARM_HOME holds.
    records = sorted((built.home / "registry/farm/cache").glob("*.json"))
    assert records
    assert not [r.name for r in records if value in r.read_bytes()]
    leaked = [str(path) for path, data in every_byte_under(built.home) if value in data]
    assert not leaked
    for platform_result in built.result.platforms:
        config = built.config(str(platform_result.platform))
        assert SECRET not in repr(config)
        assert all(SECRET not in (h.get("created_by") or "") for h in config["history"])
    for e in built.events.events:
        assert SECRET not in repr(e)


SECRET_STEPS = BASE + (
    f"RUN --mount=type=secret,id=tok {rot13_step('/run/secrets/tok')} > /from-file && "
    "cat /run/secrets/tok && stat -c '%a %u' /run/secrets/tok > /secret-mode\n"
    f'RUN --mount=type=secret,id=tok,env=TOK echo "token is $TOK" && '
    f'printf %s "$TOK" | tr a-zA-Z n-za-mN-ZA-M > /from-env\n'
)


@pytest.mark.parametrize("source", ["file", "env"])
def test_a_secret_is_seen_by_its_step_and_nowhere_else(tmp_path: Path, source: str) -> None:
    secret_file = tmp_path / "secret.txt"  # outside the context and FARM_HOME
    secret_file.write_text(SECRET + "\n")
    given = (
        SecretSource("tok", file=secret_file)
        if source == "file"
        else SecretSource("tok", env_value=SECRET)
    )
    built = build(tmp_path, SECRET_STEPS, secrets={"tok": given})
    root = rootfs(built, tmp_path)
    assert (root / "from-file").read_text().strip() == ROT13
    assert (root / "from-env").read_text().strip() == ROT13
    assert (root / "secret-mode").read_text() == "400 0\n"
    no_mount_leftovers(root)
    # The step printed it; the log shows the mask.
    logs = built.logs()
    assert "****" in logs
    assert "token is ****" in logs
    assert_secret_nowhere(built)
    # The secret is no input of the key (as in BuildKit): another value still hits.
    other = build(tmp_path, SECRET_STEPS, secrets={"tok": SecretSource("tok", env_value="x")})
    assert {how for _, name, how in outcomes(other) if name.startswith("RUN")} == {"cached"}


def test_a_failing_step_does_not_show_the_secret_in_its_error(tmp_path: Path) -> None:
    events = Recorder()
    with pytest.raises(BuildStepError) as info:
        build(
            tmp_path,
            BASE + 'RUN --mount=type=secret,id=tok,env=TOK echo "oops $TOK"; '
            "cat /run/secrets/tok 2>&1; exit 4\n",
            secrets={"tok": SecretSource("tok", env_value=SECRET)},
            recorder=events,
        )
    error = info.value
    assert error.exit_code == 4
    assert "oops ****" in error.log_tail
    assert SECRET not in str(error) and SECRET not in repr(error.args)
    (failed,) = events.of_kind("step.error")
    assert "oops ****" in failed.text
    assert not [e for e in events.events if SECRET in repr(e)]
    home = tmp_path / "farm-home"
    assert not [str(p) for p, data in every_byte_under(home) if SECRET.encode() in data]


def test_a_missing_required_secret_names_its_id_and_line(tmp_path: Path) -> None:
    dockerfile = BASE + "RUN --mount=type=secret,id=npmrc,required=true true\n"
    with pytest.raises(DockerfileError) as info:
        build(tmp_path, dockerfile)
    assert info.value.line == 4
    assert "Dockerfile:4" in str(info.value)
    assert "'npmrc'" in str(info.value)
    assert "--secret id=npmrc" in str(info.value)


def test_a_missing_optional_secret_is_skipped(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "RUN --mount=type=secret,id=npmrc "
        "if [ -e /run/secrets/npmrc ]; then echo there; else echo absent; fi > /state\n",
    )
    assert (rootfs(built, tmp_path) / "state").read_text() == "absent\n"


# ---------------------------------------------------------------- ssh

AGENT_REPLY = b"FAKE-AGENT-REPLY\n"


@contextlib.contextmanager
def fake_agent(path: Path) -> Iterator[list[bytes]]:
    """A Unix socket server that reads one message and answers AGENT_REPLY."""
    received: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    received.append(conn.recv(1024))
                    conn.sendall(AGENT_REPLY)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stop.set()
        thread.join(5)
        server.close()
        path.unlink(missing_ok=True)


def test_an_ssh_mount_is_a_socket_named_by_ssh_auth_sock(tmp_path: Path) -> None:
    with fake_agent(tmp_path / "agent.sock"):
        built = build(
            tmp_path,
            BASE + "RUN --mount=type=ssh "
            'test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK" > /sock && '
            "stat -c '%a %u' \"$SSH_AUTH_SOCK\" >> /sock\n"
            "RUN --mount=type=ssh,id=work,target=/agent.sock,mode=0666 "
            'test -S /agent.sock && echo "$SSH_AUTH_SOCK" > /sock2\n',
            ssh={
                "default": SshSource("default", tmp_path / "agent.sock"),
                "work": SshSource("work", tmp_path / "agent.sock"),
            },
        )
    root = rootfs(built, tmp_path)
    assert (root / "sock").read_text() == "/run/buildkit/ssh_agent.0\n600 0\n"
    assert (root / "sock2").read_text() == "/agent.sock\n"
    no_mount_leftovers(root, "/agent.sock")


AGENT_CLIENT = r"""
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
    const char *path = getenv("SSH_AUTH_SOCK");
    struct sockaddr_un addr = {0};
    char buf[256];
    ssize_t n;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (!path) return 2;
    alarm(10);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) return 3;
    if (write(s, "ping\n", 5) != 5) return 4;
    while ((n = read(s, buf, sizeof buf)) > 0) write(1, buf, n);
    return 0;
}
"""


def test_an_ssh_mount_reaches_the_agent(tmp_path: Path) -> None:
    if host_platform() != parse_platform(AMD64):
        pytest.skip("the client is built for the host and run as linux/amd64")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc to build a static Unix socket client (busybox has none)")
    (tmp_path / "client.c").write_text(AGENT_CLIENT)
    client = tmp_path / "context" / "agent-client"
    client.parent.mkdir()
    compiled = subprocess.run(
        [gcc, "-static", "-O1", "-o", str(client), str(tmp_path / "client.c")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if compiled.returncode != 0:
        pytest.skip(f"cannot link a static client here: {compiled.stderr[-200:]}")
    with fake_agent(tmp_path / "agent.sock") as received:
        built = build(
            tmp_path,
            BASE + "COPY agent-client /usr/bin/\nRUN --mount=type=ssh agent-client > /reply\n",
            ssh={"default": SshSource("default", tmp_path / "agent.sock")},
            platforms=[AMD64],
        )
    assert received == [b"ping\n"]
    assert (rootfs(built, tmp_path) / "reply").read_bytes() == AGENT_REPLY


def test_a_missing_required_ssh_agent_names_its_id(tmp_path: Path) -> None:
    with pytest.raises(
        DockerfileError, match=r"Dockerfile:4: RUN: ssh agent 'default' is required"
    ):
        build(tmp_path, BASE + "RUN --mount=type=ssh,required=true true\n")
