"""The `default` network: slirp4netns attached to the step's network namespace.

slirp4netns runs on the caller's side, as root on the host, so it is started
with its own sandbox and seccomp filter. `--disable-host-loopback` keeps the
step away from the host's 127.0.0.1 services; the step sees 10.0.2.0/24 with
the gateway at 10.0.2.2 and DNS at 10.0.2.3. It exits when its exit pipe
closes, which happens when the caller exits, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time

from buildkit.sandbox.base import SandboxError

SLIRP_DNS = "10.0.2.3"
SLIRP_RESOLV_CONF = f"nameserver {SLIRP_DNS}\n"


class Slirp:
    """One slirp4netns process serving one step's network namespace."""

    def __init__(self, executable: str = "slirp4netns") -> None:
        self.executable = executable
        self.process: subprocess.Popen[bytes] | None = None
        self._exit_w: int | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())

    def start(self, pid: int, timeout: float = 10.0) -> None:
        """Connect the network namespace of `pid` to the outside; return once configured."""
        path = shutil.which(self.executable)
        if path is None:
            raise SandboxError(
                f"{self.executable} is not installed; it gives RUN steps their network "
                "(apt-get install slirp4netns)"
            )
        ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()
        argv = [
            path, "--configure", "--mtu=65520", "--disable-host-loopback",
            "--enable-sandbox", "--enable-seccomp",
            f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", str(pid), "tap0",
        ]  # fmt: skip
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
                pass_fds=(ready_w, exit_r),
                env={},
                start_new_session=True,
            )
        finally:
            os.close(ready_w)
            os.close(exit_r)
        try:
            self._wait_ready(ready_r, timeout)
        finally:
            os.close(ready_r)

    def _wait_ready(self, ready_r: int, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([ready_r], [], [], max(remaining, 0))
            if readable and os.read(ready_r, 1) == b"1":
                return
            if readable or remaining <= 0:  # EOF: slirp4netns died
                self._log.seek(0)
                stderr = self._log.read().decode(errors="replace").strip()[-2000:]
                self.stop()
                raise SandboxError(f"slirp4netns did not start: {stderr or 'timed out'}")

    def stop(self) -> None:
        if self._exit_w is not None:
            os.close(self._exit_w)  # slirp4netns exits when its exit fd closes
            self._exit_w = None
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            self._log.close()
