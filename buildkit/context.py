"""Build contexts: a directory, a tarball, stdin or a git URL, as `docker build` takes them.

    open_context(".", dockerfile="build/app.Dockerfile")   # a local directory
    open_context("ctx.tar.gz")                              # a tarball file
    open_context("-", stdin=sys.stdin.buffer)               # a tarball, or just a Dockerfile
    open_context("https://host/repo.git#v1.2:src")          # a git ref and subdirectory

The Dockerfile is found as Docker finds it: `Dockerfile` at the context root
by default (for a directory, `dockerfile` too when there is no `Dockerfile`).
For a directory, `-f` is relative to the current directory and may lie
outside the context; for a tarball or git context it is relative to the
context root and cannot leave it. `-f -` reads the Dockerfile from stdin.
`<Dockerfile>.dockerignore` beside the Dockerfile replaces the root
`.dockerignore`.

As with BuildKit, the Dockerfile travels on its own (`dockerfile_text`) and
the context holds exactly what the ignore rules let through: an ignored
Dockerfile or .dockerignore is still used to build, but COPY cannot see it.

`write_tarball` writes the filtered context as a deterministic tar (sorted
entries, owner 0:0 without names, mtime 0, modes and symlinks kept, hard
links as plain files) and returns its `sha256:` digest: the same files give
the same digest on any machine, whenever they were written and by whom.

Contexts that need a copy (tarball, stdin, git) live in a temporary
directory that `cleanup()` (or leaving a `with` block) removes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from buildkit.contexts.archive import detect_archive, extract_tarball
from buildkit.contexts.files import ContextEntry, walk_context, write_deterministic_tar
from buildkit.contexts.git import (
    GitOptions,
    fetch_git,
    is_git_url,
    parse_git_url,
    redact_url,
)
from buildkit.dockerignore import IgnoreMatcher
from buildkit.errors import ContextError
from buildkit.fsutil import PathResolutionError, resolve_in_root

__all__ = [
    "BuildContext",
    "ContextEntry",
    "GitOptions",
    "context_from_directory",
    "context_from_git",
    "context_from_stdin",
    "context_from_tarball",
    "open_context",
]

DEFAULT_DOCKERFILE = "Dockerfile"
DOCKERIGNORE = ".dockerignore"
STDIN = "-"


@dataclass(frozen=True)
class BuildContext:
    """A build context ready to walk or pack, and the Dockerfile to build it with."""

    root: Path
    dockerfile_name: str
    dockerfile_text: str
    ignore: IgnoreMatcher = field(compare=False)
    source: str
    dockerfile_path: Path | None = None
    git_commit: str | None = None
    git_commit_time: int | None = None
    temp_dir: Path | None = field(default=None, repr=False)

    def iter_files(self) -> Iterator[ContextEntry]:
        """Every entry the ignore rules let through, parents before children, sorted.

        An excluded directory appears only if something inside it is
        re-included by an exception. Sockets, FIFOs and devices are skipped.
        """
        yield from walk_context(self.root, self.ignore)

    def write_tarball(self, fileobj: BinaryIO) -> str:
        """Write the filtered context to `fileobj` as a deterministic tar; return its digest."""
        return write_deterministic_tar(self.iter_files(), fileobj)

    def cleanup(self) -> None:
        """Remove the temporary copy of the context, if there is one."""
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def open_context(
    spec: str,
    *,
    dockerfile: str | None = None,
    stdin: BinaryIO | None = None,
    cwd: Path | None = None,
    scratch: Path | None = None,
    git: GitOptions | None = None,
) -> BuildContext:
    """The context `docker build <spec>` would use: `-`, a git URL, a directory or a tarball.

    `dockerfile` is the `-f` argument; `stdin` is read when `spec` or
    `dockerfile` is `-`; relative paths are taken from `cwd` (default: the
    process's working directory); temporary copies go under `scratch`.
    """
    if spec == STDIN:
        if stdin is None:
            raise ContextError("context '-' needs stdin")
        return context_from_stdin(stdin, dockerfile=dockerfile, scratch=scratch)
    if is_git_url(spec):
        return context_from_git(
            spec, dockerfile=dockerfile, stdin=stdin, scratch=scratch, options=git
        )
    if spec.startswith(("http://", "https://")):
        raise ContextError(f"unsupported context URL {redact_url(spec)!r}: only git URLs are")
    path = _absolute(Path(spec), cwd)
    if path.is_dir():
        return context_from_directory(path, dockerfile=dockerfile, stdin=stdin, cwd=cwd)
    if path.is_file():
        return context_from_tarball(path, dockerfile=dockerfile, stdin=stdin, scratch=scratch)
    raise ContextError(f"unable to prepare context: path {spec!r} not found")


def context_from_directory(
    path: Path,
    *,
    dockerfile: str | None = None,
    stdin: BinaryIO | None = None,
    cwd: Path | None = None,
) -> BuildContext:
    """A local directory, used in place. `dockerfile` is relative to `cwd`."""
    try:
        root = _absolute(path, cwd).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ContextError(f"unable to prepare context: path {str(path)!r} not found") from exc
    if not root.is_dir():
        raise ContextError(f"unable to prepare context: {str(path)!r} is not a directory")
    source = f"directory {root}"
    if dockerfile == STDIN:
        text = _stdin_dockerfile(stdin)
        ignore = _read_ignore(root / DOCKERIGNORE)
        return BuildContext(
            root=root, dockerfile_name=STDIN, dockerfile_text=text, ignore=ignore, source=source
        )
    if dockerfile is None:
        name = DEFAULT_DOCKERFILE
        given = root / name
        if not os.path.lexists(given) and os.path.lexists(root / name.lower()):
            name = name.lower()
            given = root / name
    else:
        name = dockerfile
        given = _absolute(Path(dockerfile), cwd)
    found = given.resolve()
    if not found.is_file():
        raise ContextError(f"cannot locate Dockerfile: {str(given)!r}")
    specific = Path(f"{given}{DOCKERIGNORE}")
    ignore = _read_ignore(specific if specific.is_file() else root / DOCKERIGNORE)
    return BuildContext(
        root=root,
        dockerfile_name=name,
        dockerfile_text=_read_dockerfile(found, name),
        ignore=ignore,
        source=source,
        dockerfile_path=found,
    )


def context_from_tarball(
    path: Path,
    *,
    dockerfile: str | None = None,
    stdin: BinaryIO | None = None,
    scratch: Path | None = None,
) -> BuildContext:
    """A tarball file (plain, gzip, bzip2, xz or zstd), unpacked into a temporary directory."""
    if not path.is_file():
        raise ContextError(f"unable to prepare context: tarball {str(path)!r} not found")
    temp = _make_temp(scratch)
    try:
        extract_tarball(path, temp / "context", what=str(path))
        return _unpacked_context(temp, f"tarball {path}", dockerfile, stdin)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def context_from_stdin(
    stream: BinaryIO, *, dockerfile: str | None = None, scratch: Path | None = None
) -> BuildContext:
    """`docker build -`: a tarball on stdin, or a Dockerfile alone (then `dockerfile` is unused)."""
    if dockerfile == STDIN:
        raise ContextError("cannot read both the context and the Dockerfile from stdin")
    temp = _make_temp(scratch)
    try:
        spooled = temp / "stdin"
        with open(spooled, "wb") as out:
            shutil.copyfileobj(stream, out)
        if spooled.stat().st_size == 0:
            raise ContextError("stdin: empty, expected a tarball or a Dockerfile")
        if detect_archive(spooled) is not None:
            extract_tarball(spooled, temp / "context", what="stdin")
            spooled.unlink()
            return _unpacked_context(temp, "stdin tarball", dockerfile, None)
        root = temp / "context"
        root.mkdir()
        target = root / DEFAULT_DOCKERFILE
        spooled.rename(target)
        os.chmod(target, 0o644)
        return BuildContext(
            root=root,
            dockerfile_name=DEFAULT_DOCKERFILE,
            dockerfile_text=_read_dockerfile(target, DEFAULT_DOCKERFILE),
            ignore=IgnoreMatcher(),
            source="stdin Dockerfile",
            dockerfile_path=target,
            temp_dir=temp,
        )
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def context_from_git(
    url: str,
    *,
    dockerfile: str | None = None,
    stdin: BinaryIO | None = None,
    scratch: Path | None = None,
    options: GitOptions | None = None,
) -> BuildContext:
    """A git URL `remote#ref:subdir`, fetched shallow at `ref`; `remote` is anything git accepts."""
    parsed = parse_git_url(url)
    shown = redact_url(url)
    temp = _make_temp(scratch)
    try:
        checkout_dir = temp / "context"
        checkout = fetch_git(parsed.remote, parsed.ref, checkout_dir, options=options)
        context = _unpacked_context(temp, f"git {shown}", dockerfile, stdin, subdir=parsed.subdir)
        return replace(context, git_commit=checkout.commit, git_commit_time=checkout.commit_time)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _unpacked_context(
    temp: Path,
    source: str,
    dockerfile: str | None,
    stdin: BinaryIO | None,
    *,
    subdir: str = "",
) -> BuildContext:
    """A context copied under `temp/context`: `dockerfile` is relative to its root."""
    top = temp / "context"
    root = _in_context(top, subdir, source) if subdir else top
    if root is None or not root.is_dir():
        raise ContextError(f"{source}: subdirectory {subdir!r} not found")
    if dockerfile == STDIN:
        text = _stdin_dockerfile(stdin)
        ignore = _read_ignore(_in_context(root, DOCKERIGNORE, source))
        return BuildContext(
            root=root,
            dockerfile_name=STDIN,
            dockerfile_text=text,
            ignore=ignore,
            source=source,
            temp_dir=temp,
        )
    name = dockerfile or DEFAULT_DOCKERFILE
    found = _in_context(root, name, source)
    if found is None or not found.is_file():
        raise ContextError(f"{source}: Dockerfile {name!r} not found in the context")
    ignore_file = _in_context(root, name + DOCKERIGNORE, source)
    if ignore_file is None or not ignore_file.is_file():
        ignore_file = _in_context(root, DOCKERIGNORE, source)
    return BuildContext(
        root=root,
        dockerfile_name=name,
        dockerfile_text=_read_dockerfile(found, name),
        ignore=_read_ignore(ignore_file),
        source=source,
        dockerfile_path=found,
        temp_dir=temp,
    )


def _in_context(root: Path, path: str, source: str) -> Path | None:
    """The host path of `path` in the unpacked context `root`, symlinks resolved
    inside it (`buildkit.fsutil`); None when a file stands where a directory
    should be, which is nothing there. A symlink loop is a ContextError."""
    try:
        return resolve_in_root(root, path)
    except PathResolutionError as exc:
        if isinstance(exc.__cause__, NotADirectoryError):
            return None
        raise ContextError(f"{source}: {exc}") from exc


def _absolute(path: Path, cwd: Path | None) -> Path:
    if path.is_absolute():
        return path
    return (cwd if cwd is not None else Path.cwd()) / path


def _make_temp(scratch: Path | None) -> Path:
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="farm-context-", dir=scratch))


def _read_dockerfile(path: Path, name: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ContextError(f"cannot read Dockerfile {name!r}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContextError(f"Dockerfile {name!r} is not UTF-8 text") from exc


def _stdin_dockerfile(stdin: BinaryIO | None) -> str:
    if stdin is None:
        raise ContextError("Dockerfile '-' needs stdin")
    try:
        return stdin.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContextError("the Dockerfile on stdin is not UTF-8 text") from exc


def _read_ignore(path: Path | None) -> IgnoreMatcher:
    if path is None or not path.is_file():
        return IgnoreMatcher()
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise ContextError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    try:
        return IgnoreMatcher.from_text(text)
    except ContextError as exc:
        raise ContextError(f"{path}: {exc}") from exc
