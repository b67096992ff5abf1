"""Build secrets and SSH agents handed to RUN steps, and masking them in logs.

`farm build --secret id=npm,src=FILE` (or `id=npm,env=VAR`, the CLI reads the
variable) gives a `SecretSource`; `--ssh default=$SSH_AUTH_SOCK` an
`SshSource`. A step sees a secret only through its `--mount=type=secret`
(a file on a private tmpfs, or an environment variable) and never in a layer.

`SecretMasker` wraps a step's output callback and replaces every occurrence
of a secret value by `****`, also when a value straddles two chunks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from buildkit.errors import UserError

#: BuildKit refuses secrets larger than this (session/secrets/secrets.go).
MAX_SECRET_BYTES = 500 * 1024
MASK = b"****"


@dataclass(frozen=True)
class SecretSource:
    """One `--secret`: a file to read when a step needs it, or a value already read."""

    id: str
    file: Path | None = None
    env_value: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SshSource:
    """One `--ssh ID=SOCKET`: an ssh-agent socket on this host."""

    id: str
    socket: Path


def read_secret(source: SecretSource) -> bytes:
    """The secret's bytes. Errors name the id and the file, never the value."""
    if source.env_value is not None:
        value = source.env_value.encode("utf-8", "surrogateescape")
    elif source.file is not None:
        try:
            with open(source.file, "rb") as f:
                value = f.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise UserError(
                f"secret {source.id!r}: cannot read {source.file}: {exc.strerror}"
            ) from None
    else:
        value = b""
    if len(value) > MAX_SECRET_BYTES:
        raise UserError(f"secret {source.id!r} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    return value


def mask_variants(value: bytes) -> tuple[bytes, ...]:
    """What to mask for one secret: the value without its trailing newline (a
    file ends with one, `$(cat file)` prints it without; masking the newline too
    would join log lines). Nothing for a value that is only newlines."""
    stripped = value.rstrip(b"\r\n")
    return (stripped,) if stripped else ()


class SecretMasker:
    """An output callback that forwards `output` with every secret replaced by `****`.

    Up to len(longest secret) - 1 bytes are held back between calls, in case
    they start a secret the next chunk completes; `flush()` sends them. Empty
    secrets are ignored; with no secrets at all the data passes through as is.
    Not thread-safe: one stream, one masker.
    """

    def __init__(self, output: Callable[[bytes], None], secrets: Iterable[bytes]) -> None:
        self.output = output
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        # Longest first: at one position the longest secret wins.
        self._pattern = re.compile(b"|".join(re.escape(v) for v in values)) if values else None
        self._keep = len(values[0]) - 1 if values else 0
        self._tail = b""

    def __call__(self, data: bytes) -> None:
        self.feed(data)

    def feed(self, data: bytes) -> None:
        if self._pattern is None:
            if data:
                self.output(data)
            return
        self._emit(self._tail + data, final=False)

    def flush(self) -> None:
        if self._pattern is not None and self._tail:
            self._emit(self._tail, final=True)

    def _emit(self, buffer: bytes, *, final: bool) -> None:
        assert self._pattern is not None
        # A secret starting before `cut` fits in the buffer, so it is decided now;
        # one starting at or after it may still be completed by the next chunk.
        cut = len(buffer) if final else max(0, len(buffer) - self._keep)
        out: list[bytes] = []
        pos = 0
        while pos < cut:
            match = self._pattern.search(buffer, pos)
            if match is None or match.start() >= cut:
                out.append(buffer[pos:cut])
                pos = cut
                break
            out.append(buffer[pos : match.start()])
            out.append(MASK)
            pos = match.end()
        self._tail = buffer[pos:]
        text = b"".join(out)
        if text:
            self.output(text)
