"""`NamespaceSandbox`: a step in Linux namespaces, on overlayfs, in its own cgroup.

The caller never forks itself (it may have threads): it execs a fresh Python
helper (`init.py`) and talks to it over pipes. The helper builds the
namespaces, the overlay root (mounted only inside the step's mount namespace)
and runs the step; this side owns the cgroup leaf, slirp4netns, the timeout,
the output stream and the cleanup. See `init.py` for the process tree and
`rootfs.py` for the filesystem. The step runs under a seccomp-BPF filter
(`seccomp.py`, in the spirit of Docker's default profile): no new namespaces,
mounts, keyring, bpf, perf, userfaultfd or io_uring; clone3 answers ENOSYS.

Cleanup on every exit path (success, failure, timeout, KeyboardInterrupt, an
exception from the output callback): the cgroup is killed, slirp4netns
stopped, the leaf and the scratch dir removed. If the caller is SIGKILLed,
PR_SET_PDEATHSIG takes down the helper, then pid 1, then the pid namespace,
whose mount namespace (and every mount in it) goes with it; slirp4netns sees
its exit pipe close; the empty cgroup leaf is collected by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildkit.sandbox import init
from buildkit.sandbox.base import (
    NetworkMode,
    OutputCallback,
    SandboxError,
    StepResult,
    StepSpec,
    spec_to_dict,
)
from buildkit.sandbox.cgroups import Cgroups, StepCgroup
from buildkit.sandbox.network import SLIRP_RESOLV_CONF, Slirp

#: How long to wait for the helper's pipes to close after the step was killed.
_DRAIN_SECONDS = 10.0
_IMPORT_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass
class _Run:
    """The mutable state of one run, shared by the event handlers."""

    spec: StepSpec
    helper: subprocess.Popen[bytes]
    cgroup: StepCgroup
    slirp: Slirp | None = None
    init_pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    created: list[str] = field(default_factory=list)
    timed_out: bool = False
    oom_killed: bool = False


class NamespaceSandbox:
    """Runs steps in namespaces. Needs root (real, not in a user namespace)."""

    def __init__(
        self,
        scratch_root: str | Path = "/run/farm/sandbox",
        cgroup_parent: str = "farm",
        slirp4netns: str = "slirp4netns",
        python: str = sys.executable,
    ) -> None:
        self.scratch_root = Path(scratch_root)
        self.cgroups = Cgroups(cgroup_parent)
        self.slirp4netns = slirp4netns
        self.python = python
        self._active: dict[int, _Run] = {}
        self._active_lock = threading.Lock()

    def cancel_all(self) -> None:
        """Kill every step this sandbox is running (from any thread): their
        `run` calls then return, or raise SandboxError, after cleaning up."""
        with self._active_lock:
            running = list(self._active.values())
        for state in running:
            self._kill(state)

    def run(self, spec: StepSpec, output: OutputCallback) -> StepResult:
        spec.validate()
        started = time.monotonic()
        self.scratch_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = tempfile.mkdtemp(prefix="step-", dir=self.scratch_root)
        cgroup = self.cgroups.create(spec.limits)
        status_r, status_w = os.pipe()
        state: _Run | None = None
        try:
            helper = subprocess.Popen(
                [self.python, "-I", "-S", "-c", init.BOOTSTRAP, _IMPORT_ROOT,
                 str(status_w), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(status_w,),
                env={},
                cwd="/",
                start_new_session=True,  # Ctrl-C reaches the caller only; it cleans up
            )  # fmt: skip
            os.close(status_w)
            status_w = -1
            state = _Run(spec, helper, cgroup)
            with self._active_lock:
                self._active[id(state)] = state
            request = {"spec": spec_to_dict(spec), "cgroups": cgroup.procs_files,
                       "scratch": scratch}  # fmt: skip
            self._send(state, json.dumps(request))
            self._pump(state, status_r, output, started)
        finally:
            if status_w >= 0:
                os.close(status_w)
            os.close(status_r)
            if state is not None:
                with self._active_lock:
                    self._active.pop(id(state), None)
            self._cleanup(state, cgroup, scratch)
        assert state is not None
        if state.error is not None:
            raise SandboxError(state.error)
        if state.exit_code is None and not state.timed_out:
            raise SandboxError(
                f"the sandbox helper exited with status {state.helper.returncode} "
                "before the step finished"
            )
        self._remove_created(spec, state.created)
        return StepResult(
            exit_code=state.exit_code if state.exit_code is not None else 128 + signal.SIGKILL,
            duration=time.monotonic() - started,
            timed_out=state.timed_out,
            oom_killed=state.oom_killed,
            signal=state.signal if state.exit_code is not None else signal.SIGKILL,
        )

    @staticmethod
    def _send(state: _Run, line: str) -> None:
        stdin = state.helper.stdin
        assert stdin is not None
        try:
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except BrokenPipeError:
            pass  # the helper died; its status (or silence) says why

    def _pump(self, state: _Run, status_r: int, output: OutputCallback, started: float) -> None:
        """Stream output and handle status events until both pipes close."""
        stdout = state.helper.stdout
        assert stdout is not None
        timeout = state.spec.limits.timeout_seconds
        deadline = started + timeout if timeout is not None else None
        drain_until: float | None = None
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout.fileno(), selectors.EVENT_READ, "output")
            selector.register(status_r, selectors.EVENT_READ, "status")
            while selector.get_map():
                now = time.monotonic()
                if deadline is not None and now >= deadline and not state.timed_out:
                    state.timed_out = True
                    self._kill(state)
                    drain_until = now + _DRAIN_SECONDS
                if drain_until is not None and now >= drain_until:
                    break
                wake = min(t for t in (deadline, drain_until, now + 3600) if t is not None)
                for key, _ in selector.select(max(wake - now, 0.0)):
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fd)
                    elif key.data == "output":
                        output(data)
                    else:
                        buffer += data
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            self._on_event(state, json.loads(line))

    def _on_event(self, state: _Run, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "ready":
            if state.spec.network is NetworkMode.DEFAULT:
                state.slirp = Slirp(self.slirp4netns)
                try:
                    state.slirp.start(int(event["pid"]))
                except SandboxError as exc:
                    state.error = str(exc)
                    self._kill(state)
                    return
            self._send(state, "go")
        elif kind == "init":
            state.init_pid = int(event["pid"])
        elif kind == "created":
            state.created = [str(p) for p in event["paths"]]
        elif kind == "exit":
            state.exit_code = int(event["code"])
            state.signal = event.get("signal")
        elif kind == "error":
            state.error = str(event["message"])

    @staticmethod
    def _kill(state: _Run) -> None:
        """Kill the step's whole tree: the cgroup, and pid 1 (which takes its pid ns)."""
        with contextlib.suppress(OSError):
            state.cgroup.kill()
        for pid in (state.init_pid, state.helper.pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _cleanup(self, state: _Run | None, cgroup: StepCgroup, scratch: str) -> None:
        try:
            if state is not None:
                if state.helper.poll() is None:
                    self._kill(state)
                state.helper.wait()
                for stream in (state.helper.stdin, state.helper.stdout):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
                if state.slirp is not None:
                    state.slirp.stop()
                state.oom_killed = cgroup.oom_killed()
            cgroup.remove()
        finally:
            # The tmpfs on it lived only in the step's mount namespace: this is an empty dir.
            with contextlib.suppress(OSError):
                os.rmdir(scratch)

    @staticmethod
    def _remove_created(spec: StepSpec, created: list[str]) -> None:
        """Remove mount points the helper had to create in the upper dir, deepest first."""
        for rel in reversed(created):
            path = os.path.join(spec.upper_dir, rel)
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)  # only if the step left it empty
                elif os.path.getsize(path) == 0:
                    os.unlink(path)


def default_resolv_conf(network: NetworkMode, host_resolv_conf: str = "") -> str:
    """What a step's /etc/resolv.conf should say for a network mode."""
    if network is NetworkMode.DEFAULT:
        return SLIRP_RESOLV_CONF
    if network is NetworkMode.HOST:
        return host_resolv_conf
    return ""
