"""Nothing is left behind: mounts, step processes, scratch directories, after a
successful build, a failed one, and an interrupted one (SIGINT, SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from buildkit.errors import BuildStepError
from tests.engine.conftest import BASE, build, leftovers, write_context
from tests.fixtures.leaks import host_mounts_under, processes_with, wait_until

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(90)]

FARM = Path(sys.executable).with_name("farm")


def _assert_clean(home: Path, needle: str | None = None, *, killed: bool = False) -> None:
    assert host_mounts_under(home) == []
    assert leftovers(home) == []
    sandbox = home / "sandbox"
    steps = sorted(sandbox.iterdir()) if sandbox.is_dir() else []
    if killed:
        # A killed caller leaves its step's scratch dir, empty: the tmpfs on it
        # lived only in the step's mount namespace (namespaces.py). It cannot be
        # told from a running step's from outside, so it stays.
        assert all(p.is_dir() and not os.listdir(p) for p in steps), steps
    else:
        assert steps == []
    if needle:
        assert processes_with(needle) == []


def test_clean_after_a_successful_build(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE.replace("FROM scratch", "FROM scratch AS a")
        + "RUN echo 'u:x:5:5::/:/bin/sh' >> /etc/passwd\nUSER u\nRUN true\n"
        + "FROM a\nUSER root\nCOPY --from=a /etc/passwd /p\nWORKDIR /w\nRUN sleep 0.1\n",
    )
    assert built.digest
    _assert_clean(built.home)


def test_clean_after_a_failed_build(tmp_path: Path) -> None:
    home = tmp_path / "farm-home"
    with pytest.raises(BuildStepError):
        build(tmp_path, BASE + "COPY Dockerfile /\nRUN sleep 0.1 & false\n")
    _assert_clean(home)


def _start(tmp_path: Path, seconds: int) -> tuple[subprocess.Popen[bytes], Path, str]:
    needle = f"sleep {seconds}"
    assert processes_with(needle) == [], f"a '{needle}' is already running"
    context = write_context(tmp_path / "context", BASE + "COPY Dockerfile /\n" + f"RUN {needle}\n")
    home = tmp_path / "farm-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_HOME"] = str(home)
    proc = subprocess.Popen(
        [str(FARM), "build", "--progress", "plain", "--platform", "linux/amd64", "-t", "x:1", "."],
        cwd=context,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if not wait_until(lambda: bool(processes_with(needle)) or proc.poll() is not None, 30):
        proc.kill()
        pytest.fail("the step never started")
    assert proc.poll() is None, proc.communicate()[0].decode()
    return proc, home, needle


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail("farm build did not exit")
    return proc.returncode, out.decode(errors="replace")


def test_clean_after_sigint(tmp_path: Path) -> None:
    proc, home, needle = _start(tmp_path, 60)
    try:
        proc.send_signal(signal.SIGINT)
        code, output = _finish(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert code != 0, output
    assert "Traceback" not in output
    assert wait_until(lambda: processes_with(needle) == [], 10), processes_with(needle)
    _assert_clean(home, needle)
    assert not (home / "registry/docker/registry/v2/repositories/x").exists()


def test_after_sigkill_and_the_next_run(tmp_path: Path) -> None:
    proc, home, needle = _start(tmp_path, 61)
    try:
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # What must hold at once (namespaces.py): PR_SET_PDEATHSIG takes the helper
    # and the step's pid namespace down, and every mount of the step lived in
    # the step's own mount namespace.
    assert wait_until(lambda: processes_with(needle) == [], 10), processes_with(needle)
    assert host_mounts_under(home) == []
    # The killed caller had no chance to remove its scratch directories: the
    # next build on this FARM_HOME collects them.
    context = tmp_path / "context"
    (context / "Dockerfile").write_text(BASE + "RUN true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_HOME"] = str(home)
    done = subprocess.run(
        [str(FARM), "build", "--progress", "plain", "--platform", "linux/amd64", "."],
        cwd=context, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _assert_clean(home, needle, killed=True)


def test_collect_stale_spares_a_live_builds_directories(tmp_path: Path) -> None:
    from buildkit.snapshots import Snapshots

    live, other = Snapshots(tmp_path), Snapshots(tmp_path)
    with live.new_dir("upper-") as path:
        (path / "file").write_text("in use")
        assert other.collect_stale() == []
        assert (path / "file").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("writable", "linked"), [(False, False), (True, False), (True, True)])
def test_a_view_left_mounted_by_a_killed_build_is_collected(
    tmp_path: Path, writable: bool, linked: bool
) -> None:
    """A build killed while COPY reads or writes through a host-side overlay view
    leaves it mounted; the next build's collection detaches it and removes its
    directory, and the snapshots under it are untouched; also when FARM_HOME is
    named through a symlink (the kernel lists mount points by their real path)."""
    from buildkit.snapshots import Snapshots

    home, lower, upper = tmp_path / "home", tmp_path / "lower", tmp_path / "upper"
    if linked:
        (tmp_path / "real-home").mkdir()
        home.symlink_to(tmp_path / "real-home")
    lower.mkdir()
    upper.mkdir()
    (lower / "kept").write_text("snapshot")
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom buildkit.overlay import merged\n"
        "upper = Path(sys.argv[3]) if sys.argv[3] else None\n"
        "with merged(Path(sys.argv[1]), [Path(sys.argv[2])], upper) as view:\n"
        "    print(view, flush=True)\n    time.sleep(60)\n"
    )
    argv = [sys.executable, "-c", code, str(home), str(lower), str(upper) if writable else ""]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        view = proc.stdout.readline().strip()
        assert host_mounts_under(home.resolve()) == [str(Path(view).resolve())]
    finally:
        proc.kill()
        proc.wait()
    assert host_mounts_under(home.resolve()) != []  # SIGKILL: nobody unmounted it

    removed = Snapshots(home).collect_stale()
    assert [name[:4] for name in removed] == ["ovl-"]
    assert host_mounts_under(home.resolve()) == []
    assert leftovers(home) == []
    assert (lower / "kept").read_text() == "snapshot"
    assert list(upper.iterdir()) == []  # nothing was deleted through the view
