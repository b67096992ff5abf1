"""Every error Farm raises on purpose.

    FarmError
     ├── UserError                  the input is wrong; never retried
     │    ├── DockerfileError       .path .line .instruction: a Dockerfile that cannot be built
     │    ├── ContextError          the build context (directory, tarball, git URL, .dockerignore)
     │    ├── PlatformError         a platform string that is not one
     │    └── ReferenceFormatError  an image reference that is not one
     └── InternalError              the farm or its surroundings failed; may be retried
          ├── BuildStepError        .platform .line .exit_code .log_tail
          ├── EmulationUnavailable  .platform, and how to fix it
          ├── RegistryError         AuthError, ManifestUnknown, BlobUnknown, DigestMismatch
          └── StorageError

A user's mistake is reported as BuildKit reports it: the file, the line, the
instruction and what was expected. `str(error)` is the message a user sees;
nothing below the CLI or the API prints a traceback for a FarmError.
"""

from __future__ import annotations


class FarmError(Exception):
    """Base of every error Farm raises on purpose."""

    retryable = False


class UserError(FarmError):
    """The input is wrong. Retrying the same input fails the same way."""


class DockerfileError(UserError):
    """A Dockerfile that cannot be parsed or planned.

    `line` is 1-based (0 when the error concerns the whole file, as "no FROM"
    does); `instruction` is the instruction keyword as written, upper-cased.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "Dockerfile",
        line: int = 0,
        instruction: str = "",
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.instruction = instruction
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        if self.instruction:
            return f"{where}: {self.instruction}: {self.message}"
        return f"{where}: {self.message}"


class ContextError(UserError):
    """The build context cannot be read: a missing path, a bad tarball or git URL."""


class PlatformError(UserError):
    """A platform string that names no platform Farm knows."""


class ReferenceFormatError(UserError):
    """An image reference that is not well formed."""


class InternalError(FarmError):
    """The farm or its surroundings failed; the same input may succeed later."""

    retryable = True


class BuildStepError(InternalError):
    """A RUN step exited non-zero (or was killed)."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        platform: str = "",
        path: str = "Dockerfile",
        line: int = 0,
        command: str = "",
        exit_code: int | None = None,
        log_tail: tuple[str, ...] = (),
    ) -> None:
        self.message = message
        self.platform = platform
        self.path = path
        self.line = line
        self.command = command
        self.exit_code = exit_code
        self.log_tail = log_tail
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"[{self.platform}] " if self.platform else ""
        where = f"{self.path}:{self.line}: " if self.line else ""
        text = f"{head}{where}{self.message}"
        if self.log_tail:
            text += "\n" + "\n".join(f"  | {line}" for line in self.log_tail)
        return text


class EmulationUnavailable(InternalError):
    """The host can neither run nor emulate a platform."""

    retryable = False

    def __init__(self, platform: str, fix: str) -> None:
        self.platform = platform
        self.fix = fix
        super().__init__(f"cannot run {platform} on this host: {fix}")


class RegistryError(InternalError):
    """A registry refused or failed a request."""


class AuthError(RegistryError):
    retryable = False


class ManifestUnknown(RegistryError):
    retryable = False


class BlobUnknown(RegistryError):
    retryable = False


class DigestMismatch(RegistryError):
    retryable = False


class StorageError(InternalError):
    """The store (filesystem or S3) failed."""
