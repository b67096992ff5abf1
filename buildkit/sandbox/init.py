"""The sandbox helper: a freshly exec'd, single-threaded process that builds the
namespaces and runs the step. Never imported by the caller; started as

    python -I -S -c BOOTSTRAP <import root> <status fd> <caller pid>

with the request as one JSON line on stdin, stdout/stderr on the output pipe.

Three processes, each killed when its parent dies (PR_SET_PDEATHSIG):

    helper (H)   joins the step's cgroup, unshares pid/net/uts/ipc/cgroup
                 namespaces, says "ready" and waits for "go" (the caller starts
                 slirp4netns on H's network namespace in between), forks:
    init (pid 1) unshares the mount namespace, builds the root (rootfs.py),
                 pivots into it, forks the step, reaps orphans and reports the
                 step's exit; when it exits the kernel kills the whole pid ns
    step         no_new_privs, Docker's default capabilities, uid/gid/groups,
                 cwd, the spec's env and nothing else, then the seccomp filter
                 (seccomp.py) as the last thing before it execs argv

Status events go to the caller as JSON lines on the status fd.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
from typing import Any, NoReturn

from buildkit.sandbox import linux, rootfs, seccomp
from buildkit.sandbox.base import NetworkMode, StepSpec, spec_from_dict

#: Exit codes of the step process when it fails before exec (as runc/Docker use).
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127
EXIT_SETUP_FAILED = 125


class _Reporter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, event: str, **fields: Any) -> None:
        data = (json.dumps({"event": event, **fields}) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]


def _read_line(fd: int) -> str:
    chunks = bytearray()
    while not chunks.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        chunks += byte
    return chunks.decode().rstrip("\n")


def _die_with_parent(expected_parent: int) -> None:
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected_parent:  # the parent died before prctl took effect
        os._exit(EXIT_SETUP_FAILED)


def _exec_step(spec: StepSpec, program: list[seccomp.Instruction]) -> NoReturn:
    """Become the step: drop everything the step must not have, filter, then exec."""
    try:
        os.setsid()
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.umask(0o022)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        for cap in range(linux.last_cap() + 1):
            if cap not in linux.DOCKER_DEFAULT_CAPS:
                linux.prctl(linux.PR_CAPBSET_DROP, cap)
        os.setgroups(list(spec.extra_gids))
        os.setresgid(spec.gid, spec.gid, spec.gid)
        os.setresuid(spec.uid, spec.uid, spec.uid)  # clears caps for uid != 0
        caps = linux.cap_mask(linux.DOCKER_DEFAULT_CAPS) if spec.uid == 0 else 0
        linux.capset(effective=caps, permitted=caps, inheritable=0)
        linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
        os.chdir(spec.cwd)
        os.closerange(3, 1 << 16)
        seccomp.install(program)
    except OSError as exc:
        os.write(2, f"farm: cannot start the step: {exc}\n".encode())
        os._exit(EXIT_SETUP_FAILED)
    env = dict(e.split("=", 1) for e in spec.env)
    try:
        os.execvpe(spec.argv[0], list(spec.argv), env)
    except FileNotFoundError:
        os.write(2, f"farm: {spec.argv[0]}: executable file not found\n".encode())
        os._exit(EXIT_NOT_FOUND)
    except OSError as exc:
        os.write(2, f"farm: {spec.argv[0]}: {exc.strerror}\n".encode())
        os._exit(EXIT_CANNOT_EXEC)


def _run_init(spec: StepSpec, scratch: str, report: _Reporter, lifeline: int) -> NoReturn:
    """Pid 1 of the step's pid namespace."""
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    poller = select.poll()
    poller.register(lifeline, select.POLLIN)
    if poller.poll(0):  # EOF: the helper died before prctl took effect
        os._exit(EXIT_SETUP_FAILED)
    os.close(lifeline)
    # Pid 1 ignores signals it has no handler for when they come from inside.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        created = rootfs.prepare(spec, scratch)
        report.send("created", paths=created)
        socket.sethostname(spec.hostname)
        rootfs.make_cwd(spec.cwd, spec.uid, spec.gid)
        program = seccomp.host_program()
    except Exception as exc:
        report.send("error", message=f"cannot set up the step's sandbox: {exc}")
        os._exit(EXIT_SETUP_FAILED)
    pid = os.fork()
    if pid == 0:
        os.close(report.fd)
        _exec_step(spec, program)
    report.send("started", pid=pid)
    while True:
        try:
            reaped, status = os.wait()
        except ChildProcessError:
            os._exit(EXIT_SETUP_FAILED)
        if reaped == pid:
            break
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        report.send("exit", code=128 + sig, signal=sig)
    else:
        report.send("exit", code=os.waitstatus_to_exitcode(status), signal=None)
    os._exit(0)  # the kernel now kills whatever the step left running


def main() -> None:
    status_fd, caller = int(sys.argv[2]), int(sys.argv[3])
    _die_with_parent(caller)
    report = _Reporter(status_fd)
    try:
        request = json.loads(_read_line(0))
        spec = spec_from_dict(request["spec"])
        for procs in request["cgroups"]:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        flags = linux.CLONE_NEWPID | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
        flags |= linux.CLONE_NEWCGROUP
        if spec.network is not NetworkMode.HOST:
            flags |= linux.CLONE_NEWNET
        linux.unshare(flags)
        if spec.network is not NetworkMode.HOST:
            linux.bring_up_loopback()
    except Exception as exc:
        report.send("error", message=f"cannot create the step's namespaces: {exc}")
        sys.exit(EXIT_SETUP_FAILED)
    report.send("ready", pid=os.getpid())
    if _read_line(0) != "go":
        sys.exit(EXIT_SETUP_FAILED)
    lifeline_r, lifeline_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(lifeline_w)
        _run_init(spec, request["scratch"], report, lifeline_r)
    os.close(lifeline_r)
    report.send("init", pid=pid)
    _, status = os.waitpid(pid, 0)
    sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 else EXIT_SETUP_FAILED)


BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); from buildkit.sandbox.init import main; main()"
)
