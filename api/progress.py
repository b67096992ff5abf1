"""Rendering build events: plain lines, rawjson, or a live view on a terminal."""

from __future__ import annotations

import json
import sys
import threading
from typing import TextIO

from buildkit.events import Event


class PlainProgress:
    """`#3 [linux/arm64 hello 4/6] RUN make (emulated)` then the step's output and DONE."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.lock = threading.Lock()
        self.numbers: dict[tuple[str, str, int], int] = {}

    def _number(self, e: Event) -> int:
        key = (e.platform, e.stage, e.step)
        return self.numbers.setdefault(key, len(self.numbers) + 1)

    def __call__(self, e: Event) -> None:
        with self.lock:
            n = self._number(e)
            if e.kind == "step.start":
                suffix = " (emulated)" if e.emulated else ""
                self.out.write(f"#{n} {e.label}{suffix}\n")
            elif e.kind == "step.log":
                self.out.write(f"#{n} {e.text}\n")
            elif e.kind == "step.done":
                self.out.write(f"#{n} DONE {e.duration:.1f}s\n")
            elif e.kind == "step.cached":
                self.out.write(f"#{n} CACHED\n")
            elif e.kind == "step.error":
                self.out.write(f"#{n} ERROR: {e.text.splitlines()[0] if e.text else ''}\n")
            self.out.flush()


class RawJsonProgress:
    """One JSON object a line (`--progress rawjson`)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.lock = threading.Lock()

    def __call__(self, e: Event) -> None:
        line = json.dumps(e.to_dict(), separators=(",", ":"))
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


class TtyProgress:
    """A live per-platform view: each platform's current step and recent output."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=8, transient=False)
        self.lock = threading.Lock()
        self.current: dict[str, str] = {}
        self.done: list[str] = []
        self.tail: dict[str, list[str]] = {}

    def __enter__(self) -> TtyProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def _render(self):  # type: ignore[no-untyped-def]
        from rich.text import Text

        text = Text()
        for line in self.done[-12:]:
            text.append(line + "\n", style="dim")
        for plat, step in sorted(self.current.items()):
            text.append(f"=> {step}\n", style="bold")
            for log in self.tail.get(plat, [])[-4:]:
                text.append(f"   {log}\n", style="dim")
        return text

    def __call__(self, e: Event) -> None:
        with self.lock:
            emulated = " (emulated)" if e.emulated else ""
            if e.kind == "step.start":
                self.current[e.platform] = e.label + emulated
                self.tail[e.platform] = []
            elif e.kind == "step.log":
                self.tail.setdefault(e.platform, []).append(e.text)
            elif e.kind in ("step.done", "step.cached"):
                tag = "CACHED" if e.kind == "step.cached" else f"{e.duration:.1f}s"
                self.done.append(f"=> {e.label}{emulated}  {tag}")
                self.current.pop(e.platform, None)
            elif e.kind == "step.error":
                self.done.append(f"=> ERROR {e.label}: {e.text.splitlines()[0] if e.text else ''}")
                self.current.pop(e.platform, None)
            self.live.update(self._render())


def make_progress(mode: str):  # type: ignore[no-untyped-def]
    """auto: a live view on a terminal, plain lines on a pipe."""
    if mode == "auto":
        mode = "tty" if sys.stderr.isatty() else "plain"
    if mode == "tty":
        return TtyProgress()
    if mode == "rawjson":
        return RawJsonProgress()
    return PlainProgress()
