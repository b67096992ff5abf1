"""The namespace sandbox's lifetime (timeouts, interrupts, a killed caller), network, QEMU."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildkit.sandbox import (
    Limits,
    NamespaceSandbox,
    NetworkMode,
    StepSpec,
    default_resolv_conf,
)
from tests.buildkit.sandbox.conftest import Runner
from tests.fixtures.leaks import mounted_anywhere, processes_with, wait_until
from tests.fixtures.rootfs import busybox_rootfs

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]


# --- lifetime: timeouts, interrupts, a killed caller ---------------------------------


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_timeout_kills_the_whole_tree(run_step: Runner) -> None:
    ran = run_step(
        "readlink /proc/self/ns/mnt; sleep 4245 & sleep 4246 & echo started; wait",
        limits=Limits(timeout_seconds=1),
    )
    assert ran.result.timed_out
    assert ran.result.exit_code == 137
    assert ran.result.duration < 10
    assert "started" in ran.text
    assert processes_with("sleep 424") == []
    step_namespace = ran.text.split()[0]
    assert step_namespace.startswith("mnt:[")
    assert step_namespace != _mount_namespace(os.getpid())
    assert wait_until(lambda: step_namespace not in _live_mount_namespaces())  # mounts gone too


def test_an_interrupted_caller_leaves_nothing(sandbox: NamespaceSandbox, run_step: Runner) -> None:
    def interrupt(chunk: bytes) -> None:
        raise KeyboardInterrupt  # what Ctrl-C does to the caller, mid-step

    with pytest.raises(KeyboardInterrupt):
        run_step("echo started; sleep 4247", output_hook=interrupt)
    assert processes_with("sleep 4247") == []


def test_the_run_leaves_no_cgroup_or_scratch(sandbox: NamespaceSandbox, run_step: Runner) -> None:
    run_step("true")
    layout = sandbox.cgroups.layout
    parents = [layout.v2_root / "farm"] if layout.v2_root else []
    assert not any(list(p.glob(f"step-{os.getpid()}-*")) for p in parents if p.exists())
    assert list(sandbox.scratch_root.iterdir()) == []


CALLER = """
import sys
from buildkit.sandbox import NamespaceSandbox, NetworkMode, StepSpec
lower, upper, work, scratch = sys.argv[1:5]
spec = StepSpec(lower_dirs=(lower,), upper_dir=upper, work_dir=work,
                argv=("/bin/sh", "-c", "sleep 4248 & echo started; sleep 4249"),
                env=("PATH=/bin",), network=NetworkMode.DEFAULT)
def out(data):
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
NamespaceSandbox(scratch_root=scratch).run(spec, out)
"""


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _live_mount_namespaces() -> set[str]:
    found = (_mount_namespace(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit())
    return {ns for ns in found if ns is not None}


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_sigkill_of_the_caller_leaves_no_process_mount_or_cgroup(
    sandbox: NamespaceSandbox, tmp_path: Path, amd64_root: Path
) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, str(amd64_root), str(upper), str(work),
         str(sandbox.scratch_root)],
        stdout=subprocess.PIPE, cwd=Path(__file__).parents[3],
    )  # fmt: skip
    try:
        assert caller.stdout is not None
        assert caller.stdout.readline() == b"started\n"
        tree = _descendants(caller.pid)
        assert len(tree) >= 4  # helper, init, sh, sleep (and slirp4netns)
        # The step's overlay lives in mount namespaces of the step's own, and
        # names the upper dir by a relative link (no host path in its options).
        ours = _mount_namespace(os.getpid())
        step_namespaces = {_mount_namespace(pid) for pid in tree} - {ours, None}
        assert step_namespaces
        assert any("upperdir=upper" in _read(Path(f"/proc/{pid}/mountinfo")) for pid in tree)
        assert "upperdir=upper" not in Path("/proc/self/mountinfo").read_text()
        assert not mounted_anywhere(str(upper))
        caller.kill()
        caller.wait()
        assert wait_until(lambda: not any(_alive(pid) for pid in tree)), tree
        assert processes_with("sleep 424") == []
        assert wait_until(lambda: not (_live_mount_namespaces() & step_namespaces))
        layout = sandbox.cgroups.layout
        assert layout.v2_root is not None
        leaves = list((layout.v2_root / "farm").glob(f"step-{caller.pid}-*"))
        assert leaves, "the caller's cgroup leaf should outlive it (nobody could remove it)"
        assert all((leaf / "cgroup.procs").read_text() == "" for leaf in leaves)
        sandbox.run(  # the next run collects the dead caller's empty leaves
            StepSpec(lower_dirs=(str(amd64_root),), upper_dir=str(upper), work_dir=str(work),
                     argv=("/bin/true",)),
            lambda data: None,
        )  # fmt: skip
        assert not any(leaf.exists() for leaf in leaves)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()


# --- network and emulation ------------------------------------------------------------

TEST_NET_ADDR = "198.51.100.1"  # TEST-NET-2: the host's eth0 may already use TEST-NET-1


@pytest.fixture
def test_net_address() -> Iterator[str]:
    """A host address on an interface the test makes (dummy, or veth without the module)."""
    if not shutil.which("ip"):
        pytest.skip("needs iproute2")
    created = subprocess.run(["ip", "link", "add", "farmtest0", "type", "dummy"],
                             capture_output=True).returncode == 0  # fmt: skip
    if not created:
        subprocess.run(["ip", "link", "add", "farmtest0", "type", "veth", "peer", "name",
                        "farmtest1"], check=True)  # fmt: skip
        subprocess.run(["ip", "link", "set", "farmtest1", "up"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{TEST_NET_ADDR}/32", "dev", "farmtest0"], check=True)
        subprocess.run(["ip", "link", "set", "farmtest0", "up"], check=True)
        yield TEST_NET_ADDR
    finally:
        subprocess.run(["ip", "link", "del", "farmtest0"], check=False)


class _Listener:
    """A TCP listener that records what each connection sends, then closes it."""

    def __init__(self, address: str) -> None:
        self.sock = socket.create_server((address, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(3)
                try:
                    self.received.append(conn.recv(100))
                except TimeoutError:
                    self.received.append(b"")

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.mark.skipif(not shutil.which("slirp4netns"), reason="needs slirp4netns")
def test_default_network_reaches_out_but_not_host_loopback(
    run_step: Runner, test_net_address: str
) -> None:
    loopback, outside = _Listener("127.0.0.1"), _Listener(test_net_address)
    try:
        ran = run_step(
            f"nc -w 3 10.0.2.2 {loopback.port} </dev/null && echo GATEWAY-REACHED; "
            f"nc -w 3 127.0.0.1 {loopback.port} </dev/null && echo LOOPBACK-REACHED; "
            f"echo hello | nc -w 3 {test_net_address} {outside.port} && echo OUTSIDE-REACHED; "
            "cat /etc/resolv.conf",
            network=NetworkMode.DEFAULT, resolv_conf=default_resolv_conf(NetworkMode.DEFAULT),
        )  # fmt: skip
    finally:
        loopback.close()
        outside.close()
    assert "GATEWAY-REACHED" not in ran.text and "LOOPBACK-REACHED" not in ran.text
    assert loopback.received == []
    assert "OUTSIDE-REACHED" in ran.text, ran.text
    assert outside.received == [b"hello\n"]
    assert "nameserver 10.0.2.3" in ran.text


def _binfmt_can_run_arm64() -> bool:
    if os.uname().machine == "aarch64":
        return True
    handler = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not handler.exists():
        return False
    text = handler.read_text()
    flags = next((line.split()[1] for line in text.splitlines() if line.startswith("flags:")), "")
    return text.startswith("enabled") and "F" in flags


@pytest.mark.skipif(not _binfmt_can_run_arm64(), reason="no binfmt_misc qemu-aarch64 (F flag)")
@pytest.mark.timeout(120)
def test_arm64_busybox_runs_under_qemu(run_step: Runner) -> None:
    ran = run_step("uname -m; echo $$", lowers=(str(busybox_rootfs("arm64")),))
    assert ran.result.exit_code == 0, ran.text
    assert ran.text.split() == ["aarch64", "2"]
