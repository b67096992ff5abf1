"""What the benchmarks share: running a command and timing it, the machine
line of a report's header, and the pieces of its markdown tables.

Imported by run.py and registry.py, which put this folder on sys.path.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import cases as C

# ------------------------------------------------------------ running commands


@dataclass
class Run:
    ok: bool
    seconds: float
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    end_wall: float = 0.0  # time.time() when the process ended
    argv: list[str] = field(default_factory=list)

    def tail(self, lines: int = 12) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])

    def short_error(self) -> str:
        """The last meaningful line of the error, for a table cell."""
        for line in reversed((self.stderr.strip() or self.stdout.strip()).splitlines()):
            line = line.strip()
            if line and not line.startswith(("^", "~")):
                return line[-140:]
        return f"exit {self.returncode}"


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900,
    log_to: Path | None = None,
) -> Run:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, env=env, cwd=cwd, timeout=timeout, capture_output=True, text=True,
            errors="replace", stdin=subprocess.DEVNULL,
        )  # fmt: skip
        result = Run(
            proc.returncode == 0, time.monotonic() - started, proc.stdout, proc.stderr,
            proc.returncode, time.time(), argv,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        result = Run(
            False, time.monotonic() - started, out, err + f"\nTIMEOUT after {timeout:.0f}s",
            None, time.time(), argv,
        )  # fmt: skip
    except OSError as exc:
        result = Run(False, time.monotonic() - started, "", str(exc), None, time.time(), argv)
    if log_to is not None:
        log_to.parent.mkdir(parents=True, exist_ok=True)
        log_to.write_text(
            f"$ {shlex.join(argv)}\n# exit {result.returncode}, {result.seconds:.2f}s\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
        )
    return result


def mounts_under(base: Path) -> list[str]:
    prefix = os.path.realpath(base) + "/"
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mountpoint = line.split()[1].replace("\\040", " ")
        if mountpoint.startswith(prefix) or mountpoint == prefix.rstrip("/"):
            found.append(mountpoint)
    return found


def wipe(path: Path) -> None:
    """Unmount whatever is left under `path`, then remove it."""
    for mountpoint in reversed(mounts_under(path)):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, timeout=60)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():  # immutable or busy leftovers: say so, go on
        C.log(f"warning: could not remove all of {path}")


# ------------------------------------------------------------ report


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def machine(tail: str) -> str:
    """The report's `- machine:` line: CPU, CPUs, RAM, kernel, then `tail`."""
    return (
        f"- machine: {cpu_model()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        f"Linux {platform.release()}, {tail}"
    )


def failed_cell(error: str) -> str:
    """A table cell for a failure (a `|` in the error would split the cell)."""
    return f"FAIL: {error}".replace("|", "\\|")


def timing_cell(times: list[float], digits: int, unit: str = "") -> str:
    """The median of `times`, with (min-max) when there are several; `-` for none."""
    if not times:
        return "-"
    med = statistics.median(times)
    if len(times) == 1:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} ({min(times):.{digits}f}-{max(times):.{digits}f})"


def markdown(lines: list[str], failures: list[tuple[str, str]]) -> str:
    """The report: `lines`, then the tail of the output of each (title, tail) failure."""
    out = list(lines)
    if failures:
        out += ["", "Failures (tail of the output):", ""]
        for title, tail in failures:
            out += [f"{title}:", "", "```", tail, "```", ""]
    return "\n".join(out).rstrip() + "\n"
