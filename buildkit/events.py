"""Progress events: what a build reports while it runs.

The engine calls an `Emit` callback with these; the CLI renders them (a live
view on a terminal, plain lines on a pipe, one JSON object a line for
`--progress rawjson`), and the farm will carry the same events over a Redis
stream to Server-Sent Events. They are plain data, cheap to serialise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

Kind = Literal["step.start", "step.log", "step.done", "step.cached", "step.error", "build.done"]


@dataclass(frozen=True)
class Event:
    kind: Kind
    platform: str = ""  # the platform the step runs for, "linux/arm64"
    stage: str = ""  # stage name, or its index as text
    step: int = 0  # 1-based position in the stage
    total: int = 0  # steps in the stage
    name: str = ""  # "RUN make" as written (expanded)
    line: int = 0  # Dockerfile line
    text: str = ""  # a log line, or an error message
    emulated: bool = False
    duration: float = 0.0  # seconds, on step.done
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def label(self) -> str:
        """`[linux/arm64 build 2/5] RUN make`, as the progress output shows it."""
        where = f"{self.platform} {self.stage}".strip()
        return f"[{where} {self.step}/{self.total}] {self.name}"


Emit = Callable[[Event], None]


def discard(event: Event) -> None:
    """An Emit that drops everything."""


class Recorder:
    """An Emit that keeps every event; thread safe (stages run in parallel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_kind(self, kind: Kind) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]
