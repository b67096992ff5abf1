"""The namespace sandbox against the real kernel: isolation, layer capture, lifetime."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from buildkit.sandbox import (
    BindMount,
    Limits,
    NetworkMode,
    TmpfsMount,
)
from buildkit.sandbox.rootfs import MASKED_PATHS
from tests.buildkit.sandbox.conftest import Runner

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

DOCKER_CAPS = "00000000a80425fb"


def test_fresh_pid_namespace_and_hostname(run_step: Runner) -> None:
    ran = run_step("echo pid=$$; hostname; cat /etc/hostname; ls /proc | grep -c '^[0-9]'",
                   hostname="stepbox")  # fmt: skip
    assert ran.result.exit_code == 0, ran.text
    lines = ran.text.split()
    assert lines[0] == "pid=2"  # pid 1 is the sandbox's init
    assert lines[1:3] == ["stepbox", "stepbox"]
    assert int(lines[3]) <= 4  # init, sh, ls, grep: nothing of the host


def test_only_expected_mounts(run_step: Runner) -> None:
    ran = run_step("cat /proc/self/mountinfo")
    assert ran.result.exit_code == 0, ran.text
    points = {line.split()[4] for line in ran.text.splitlines()}
    expected = {
        "/", "/proc", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/sys",
        "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/etc/hosts", "/etc/resolv.conf",
        "/etc/hostname", *(f"/dev/{d}" for d in ("null", "zero", "full", "random", "urandom", "tty")),
    }  # fmt: skip
    # Masks are mounted where the kernel has the path (the sandbox's /proc and /sys
    # show the same kernel as the host's).
    expected |= {p for p in MASKED_PATHS if os.path.exists(p)}
    if os.path.exists("/proc/sysrq-trigger"):
        expected.add("/proc/sysrq-trigger")
    assert points == expected


def test_mount_table_names_no_host_path(run_step: Runner, tmp_path: Path, amd64_root: Path) -> None:
    """The overlay's options are relative links in the step's own scratch: the
    mount table tells the step nothing of where its layers live on the host."""
    ran = run_step("cat /proc/self/mountinfo")
    assert ran.result.exit_code == 0, ran.text
    root = next(line for line in ran.text.splitlines() if line.split()[4] == "/")
    assert "lowerdir=l0:stub,upperdir=upper,workdir=work" in root
    for host_path in (str(tmp_path), str(amd64_root), str(ran.upper)):
        assert host_path not in ran.text


def test_host_paths_are_not_visible(run_step: Runner, tmp_path: Path) -> None:
    marker = Path("/tmp") / f"farm-marker-{uuid.uuid4().hex}"
    marker.write_text("host secret")
    try:
        ran = run_step(
            f"test -e {marker} && echo LEAK; test -e {tmp_path} && echo LEAK; "
            "test -e /work && echo LEAK; ls -a /"
        )
    finally:
        marker.unlink()
    assert ran.result.exit_code == 0, ran.text
    assert "LEAK" not in ran.text
    assert set(ran.text.split()) == {".", "..", "bin", "dev", "etc", "proc", "root", "sys", "tmp",
                                     "usr", "var"}  # fmt: skip


def test_proc_is_masked_and_read_only(run_step: Runner) -> None:
    ran = run_step(
        "for f in /proc/kcore /proc/keys /proc/timer_list; do "
        "  test -e $f && echo $f=$(wc -c < $f); done; "
        "ls /proc/acpi | wc -l; "
        "echo x > /proc/sys/kernel/hostname || echo SYS-RO; "
        "echo h > /proc/sysrq-trigger || echo SYSRQ-RO; "
        "touch /sys/kernel/x || echo SYSFS-RO; "
        "grep -q . /sys/firmware/* 2>/dev/null || echo FIRMWARE-EMPTY"
    )
    assert ran.result.exit_code == 0, ran.text
    for path in ("/proc/kcore", "/proc/keys", "/proc/timer_list"):
        if os.path.exists(path):
            assert f"{path}=0" in ran.text
    for word in ("SYS-RO", "SYSRQ-RO", "SYSFS-RO", "FIRMWARE-EMPTY"):
        assert word in ran.text
    assert "Read-only file system" in ran.text


def test_block_devices_made_by_mknod_are_unusable(run_step: Runner) -> None:
    dev = os.stat("/").st_dev  # the host's root disk: a device that really exists
    major, minor = os.major(dev), os.minor(dev)
    ran = run_step(
        f"mknod /tmp/disk b {major} {minor} && echo MADE; "
        f"dd if=/tmp/disk of=/dev/null bs=512 count=1 && echo READ-ROOTFS; "
        f"mknod /dev/disk b {major} {minor} && dd if=/dev/disk of=/dev/null count=1 && echo READ-DEV"
    )
    assert "MADE" in ran.text  # CAP_MKNOD is in Docker's default set...
    assert "READ-ROOTFS" not in ran.text  # ...but every mount is nodev
    assert "READ-DEV" not in ran.text
    assert "Permission denied" in ran.text


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_root_gets_dockers_default_capabilities(run_step: Runner) -> None:
    ran = run_step("cat /proc/self/status")
    status = _status(ran.text)
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == DOCKER_CAPS
    assert status["CapInh"] == status["CapAmb"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"


def test_uid_gid_groups_and_cwd(run_step: Runner) -> None:
    ran = run_step(
        "id -u; id -g; id -G; pwd; stat -c %u:%g .; grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
        uid=1000, gid=1001, extra_gids=(5, 100), cwd="/home/build/src",
    )  # fmt: skip
    assert ran.result.exit_code == 0, ran.text
    lines = ran.text.splitlines()
    assert lines[:5] == ["1000", "1001", "1001 5 100", "/home/build/src", "1000:1001"]
    status = _status(ran.text)
    assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
    assert status["CapBnd"] == DOCKER_CAPS
    assert status["NoNewPrivs"] == "1"
    assert {"home", "home/build", "home/build/src"} <= ran.upper_entries()


def test_env_is_exactly_the_given_env(run_step: Runner) -> None:
    env = ("PATH=/bin", "A=1", "B=with spaces=and equals")
    ran = run_step(argv=("env",), env=env)
    assert ran.result.exit_code == 0, ran.text
    assert sorted(ran.text.splitlines()) == sorted(env)


@pytest.mark.parametrize(("script", "code", "sig"), [
    ("exit 0", 0, None),
    ("exit 42", 42, None),
    ("kill -9 $$", 137, 9),
    ("/nonexistent", 127, None),
])  # fmt: skip
def test_exit_codes_propagate(run_step: Runner, script: str, code: int, sig: int | None) -> None:
    ran = run_step(script)
    assert (ran.result.exit_code, ran.result.signal) == (code, sig)
    assert not ran.result.timed_out


def test_missing_executable_is_reported(run_step: Runner) -> None:
    ran = run_step(argv=("no-such-tool", "x"))
    assert ran.result.exit_code == 127
    assert "no-such-tool" in ran.text


def test_output_is_streamed_in_order(run_step: Runner) -> None:
    ran = run_step("for i in 1 2 3; do echo out$i; echo err$i >&2; done")
    assert ran.text.split() == ["out1", "err1", "out2", "err2", "out3", "err3"]


def test_writes_land_in_the_upper_dir_only(run_step: Runner, amd64_root: Path) -> None:
    before = sorted(str(p) for p in amd64_root.rglob("*"))
    ran = run_step("echo new > /tmp/new; echo x >> /etc/passwd; mkdir -p /opt/app; "
                   "cat /etc/hosts /etc/resolv.conf > /dev/null; echo 1.2.3.4 h >> /etc/hosts",
                   resolv_conf="nameserver 192.0.2.53\n")  # fmt: skip
    assert ran.result.exit_code == 0, ran.text
    assert ran.upper_entries() == {"tmp", "tmp/new", "etc", "etc/passwd", "opt", "opt/app"}
    assert sorted(str(p) for p in amd64_root.rglob("*")) == before
    assert "x" not in (amd64_root / "etc/passwd").read_text().splitlines()


def test_a_root_without_mount_points_leaves_no_stubs(run_step: Runner, tmp_path: Path,
                                                     amd64_root: Path) -> None:  # fmt: skip
    bare = tmp_path / "bare"
    (bare / "bin").mkdir(parents=True)
    (bare / "bin/busybox").symlink_to(amd64_root / "bin/busybox")  # resolved by the host
    (bare / "bin/busybox").unlink()
    (bare / "bin/busybox").write_bytes((amd64_root / "bin/busybox").read_bytes())
    (bare / "bin/busybox").chmod(0o755)
    ran = run_step(argv=("/bin/busybox", "sh", "-c", "/bin/busybox cat /etc/hostname"),
                   lowers=(str(bare),), hostname="bare",
                   mounts=(TmpfsMount("/var/cache/x"),))  # fmt: skip
    assert ran.result.exit_code == 0, ran.text
    assert ran.text == "bare\n"
    assert ran.upper_entries() == set()


def test_deletions_are_overlay_whiteouts(run_step: Runner) -> None:
    ran = run_step("rm /etc/group && rm -r /var")
    assert ran.result.exit_code == 0, ran.text
    for rel in ("etc/group", "var"):
        st = os.lstat(ran.upper / rel)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_extra_mounts_are_not_captured(run_step: Runner, tmp_path: Path) -> None:
    cache, secret = tmp_path / "cache", tmp_path / "secret"
    cache.mkdir()
    secret.write_text("s3cr3t")
    ran = run_step(
        "echo hit > /root/.cache/x; cat /run/secrets/token; echo; "
        "echo y > /run/secrets/token || echo SECRET-RO; df -k /scratch | tail -1",
        mounts=(BindMount(str(cache), "/root/.cache", readonly=False),
                BindMount(str(secret), "/run/secrets/token"),
                TmpfsMount("/scratch", size_bytes=1 << 20)),
    )  # fmt: skip
    assert ran.result.exit_code == 0, ran.text
    assert (cache / "x").read_text() == "hit\n"
    assert "s3cr3t" in ran.text and "SECRET-RO" in ran.text
    assert " 1024 " in ran.text  # the tmpfs has the requested size
    assert ran.upper_entries() == set()


def test_network_none_has_only_loopback(run_step: Runner) -> None:
    ran = run_step("tail -n +3 /proc/net/dev | cut -d: -f1; ip link show lo",
                   network=NetworkMode.NONE)  # fmt: skip
    assert ran.result.exit_code == 0, ran.text
    assert ran.text.split()[0] == "lo"
    assert len([line for line in ran.text.splitlines() if ":" not in line]) == 1
    assert ",UP" in ran.text


def test_pids_limit(run_step: Runner) -> None:
    ran = run_step("for i in $(seq 30); do sleep 5 & done 2>&1 | grep -c fork; kill $(jobs -p)",
                   limits=Limits(pids=10))  # fmt: skip
    assert "can't fork" in ran.text or int(ran.text.split()[0]) > 0


def test_memory_limit_kills_the_step(run_step: Runner) -> None:
    ran = run_step("tail -c 300000000 /dev/zero > /dev/null",
                   limits=Limits(memory_bytes=64 << 20))  # fmt: skip
    assert ran.result.exit_code == 137
    assert ran.result.oom_killed
