"""ADD: COPY plus archives, URLs and git repositories.

`add_sources(spec, src_root=..., dest_root=..., workdir=..., fetch=..., git=...)`
handles each source of an ADD by its kind, as BuildKit does:

* a local path: COPY's rules (`buildkit.copy`), except that a file that is a
  tar archive (by content: plain, gzip, bzip2, xz) is extracted into the
  destination directory (`buildkit.untar`) unless `--unpack=false`;
* an `http://` or `https://` URL: downloaded with `fetch` (httpx by default)
  to a scratch file, checked against `--checksum=sha256:...` before anything
  is written, then placed as a file of mode 0600 (before `--chmod`) with the
  mtime of its `Last-Modified` header; named after the URL path when the
  destination is a directory. Not unpacked unless `--unpack=true`;
* a git URL (`https://host/repo.git#ref:subdir`, `git@host:repo.git`,
  `ssh://`, `git://`): fetched shallowly at `ref` by `git`
  (`buildkit.gitsource`) and its tree copied, without `.git` unless
  `--keep-git-dir`. `--checksum` is then a commit hash prefix.

URLs are fetched through the `fetch` and `git` dependencies so tests (and the
engine's network policy) decide what is reachable.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from buildkit.copy import CopyError, CopyJob, check_several, dest_path
from buildkit.dockerfile.instructions import Add
from buildkit.errors import InternalError, UserError
from buildkit.gitsource import GitFetcher, is_git_url
from buildkit.sources import expand_source
from buildkit.untar import extract_archive, open_archive

__all__ = [
    "AddError",
    "ChecksumMismatch",
    "Download",
    "Downloads",
    "Fetch",
    "Fetched",
    "Sink",
    "add_sources",
    "fetch_with_httpx",
    "is_url",
]

URL_MODE = 0o600


class AddError(UserError):
    """An ADD source that cannot be fetched or used: a 4xx URL, a bad --checksum."""


class ChecksumMismatch(AddError):
    """The downloaded content does not have the digest `--checksum` promised."""


@dataclass(frozen=True)
class Fetched:
    last_modified: datetime | None = None


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


# fetch(url, out) writes the body of `url` to `out` and says when it was modified.
Fetch = Callable[[str, Sink], Fetched]


class GitFetch(Protocol):
    """`GitFetcher.fetch`, or `Downloads.git_fetch`."""

    def __call__(self, url: str, into: Path, *, keep_git_dir: bool = False) -> tuple[Path, str]: ...


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def fetch_with_httpx(url: str, out: Sink, *, timeout: float = 300.0) -> Fetched:
    """Download `url` into `out` with httpx, following redirects."""
    import httpx  # here, not at the top: most builds fetch nothing

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if 400 <= response.status_code < 500:
                raise AddError(f"failed to fetch {url}: HTTP {response.status_code}")
            response.raise_for_status()
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
            header = response.headers.get("last-modified")
    except httpx.HTTPError as exc:
        raise InternalError(f"failed to fetch {url}: {exc}") from exc
    modified = None
    if header:
        try:
            modified = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            modified = None
    return Fetched(last_modified=modified)


@dataclass(frozen=True)
class Download:
    path: Path
    digest: str  # sha256:<hex>
    fetched: Fetched


class Downloads:
    """The remote sources of ADDs, for one build: URLs downloaded once into
    `directory`, git refs resolved once.

    The content digest of a download is the URL's identity in the step cache
    key (as BuildKit, which fetches to compute the key); the step then adds
    that same file (`get`), so the layer holds exactly the bytes its key
    names, whatever the server sends later, and nothing is downloaded twice.
    A git URL's identity is what its ref names on the remote (`git_identity`);
    `git_fetch` fails rather than add a tree the ref has moved to since.
    Safe to use from the solver's threads; each URL is fetched by one of them.
    """

    def __init__(
        self, directory: Path, fetch: Fetch | None = None, git: GitFetcher | None = None
    ) -> None:
        self.directory = directory
        self.git = git or GitFetcher()
        self._fetch = fetch or fetch_with_httpx
        self._done: dict[str, Download] = {}
        self._refs: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _once(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def git_identity(self, url: str) -> str:
        """What the ref of the git URL named when this build first asked."""
        with self._once("git " + url):
            if url not in self._refs:
                self._refs[url] = self.git.resolve(url)
            return self._refs[url]

    def git_fetch(self, url: str, into: Path, *, keep_git_dir: bool = False) -> tuple[Path, str]:
        """`GitFetcher.fetch`, held to the identity the step's key was made of."""
        return self.git.fetch(url, into, keep_git_dir=keep_git_dir, expect=self._refs.get(url))

    def get(self, url: str) -> Download:
        with self._once(url):
            if url not in self._done:
                self._done[url] = self._download(url)
            return self._done[url]

    def _download(self, url: str) -> Download:
        path = self.directory / f"url-{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        try:
            with open(path, "wb") as out:
                fetched = self._fetch(url, _Hashing(out, digest))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Download(path, f"sha256:{digest.hexdigest()}", fetched)

    def identity(self, url: str) -> str:
        """`sha256:<hex>` of what `url` served when this build first asked."""
        return self.get(url).digest

    def identities(self, inst: Add) -> dict[str, str]:
        """What each remote source of an ADD is now, for its cache key (as
        BuildKit, which fetches to compute the key): a URL's content digest, a
        git URL's ref as `git ls-remote` resolves it. With `--checksum` the
        checksum is the identity (it is in the step key too) and nothing is
        fetched: a changed download fails the check when the step runs."""
        known: dict[str, str] = {}
        for source in inst.sources:
            if source in known or not (is_git_url(source) or is_url(source)):
                continue
            if inst.checksum:
                known[source] = f"checksum:{inst.checksum}"
            elif is_git_url(source):
                known[source] = self.git_identity(source)
            else:
                known[source] = self.identity(source)
        return known


def _parse_checksum(checksum: str) -> str:
    algo, sep, digest = checksum.partition(":")
    if not sep or algo != "sha256" or len(digest) != 64 or not _is_hex(digest):
        raise AddError(f"invalid checksum {checksum!r}: expected sha256:<64 hex digits>")
    return digest.lower()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def add_sources(
    spec: Add,
    *,
    src_root: Path,
    dest_root: Path,
    workdir: str,
    fetch: Fetch | None = None,
    git: GitFetcher | None = None,
    downloads: Downloads | None = None,
    source_name: str = "build context",
) -> list[str]:
    """Carry out an ADD; return the image paths written at the top level. Remote
    sources come from the build's `downloads` when given (else `fetch`, `git`)."""
    job = CopyJob.for_spec(spec, dest_root, preserve_owner=False)
    dest, dest_is_dir = dest_path(spec.dest, workdir)
    local = [s for s in spec.sources if not is_url(s) and not is_git_url(s)]
    if spec.checksum and local:
        raise AddError(f"ADD --checksum: only URL and git sources can be checked, not {local[0]}")
    matches = [m for s in local for m in expand_source(src_root, s, source_name=source_name)]
    remote = len(spec.sources) - len(local)
    check_several(spec, len(matches) + remote + len(spec.heredocs), dest, dest_is_dir, job)
    for source in spec.sources:
        if is_git_url(source):
            git_fetch = downloads.git_fetch if downloads else (git or GitFetcher()).fetch
            _add_git(job, spec, source, dest, git_fetch)
        elif is_url(source):
            _add_url(job, spec, source, dest, dest_is_dir, fetch or fetch_with_httpx, downloads)
    for match in matches:
        tar = (
            open_archive(match.host) if spec.unpack is not False and match.host.is_file() else None
        )
        if tar is None:
            job.copy_match(match, dest, dest_is_dir, parents=False)
            continue
        if job.excludes is not None and job.excludes.matches(posixpath.basename(match.path)):
            tar.close()
            continue
        with tar:
            job.written.extend(
                extract_archive(tar, dest_root, dest, owner=job.owner, archive_name=match.path)
            )
    for heredoc in spec.heredocs:
        target = job.target_for_file(dest, dest_is_dir, heredoc.name)
        job.write_file(heredoc.content.encode(), target, mode=0o644, mtime_ns=None)
    return job.written


def _add_url(
    job: CopyJob,
    spec: Add,
    url: str,
    dest: str,
    dest_is_dir: bool,
    fetch: Fetch,
    downloads: Downloads | None,
) -> None:
    """Add the build's download of `url` (without a build: a download of its own)."""
    want = _parse_checksum(spec.checksum) if spec.checksum else None
    name = posixpath.basename(unquote(urlsplit(url).path))
    with contextlib.ExitStack() as stack:
        if downloads is None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="farm-add-"))
            downloads = Downloads(Path(scratch), fetch)
        download = downloads.get(url)
        got = download.digest.removeprefix("sha256:")
        if want is not None and got != want:
            raise ChecksumMismatch(
                f"ADD {url}: checksum mismatch: expected sha256:{want}, got sha256:{got}"
            )
        if spec.unpack:
            tar = open_archive(download.path)
            if tar is not None:
                with tar:
                    job.written.extend(
                        extract_archive(tar, job.dest_root, dest, owner=job.owner, archive_name=url)
                    )
                return
        if (dest_is_dir or job.is_dir(dest)) and name in ("", ".", ".."):
            raise CopyError(f"ADD {url}: cannot name a file after a URL without a path")
        target = job.target_for_file(dest, dest_is_dir, name)
        stamp = download.fetched.last_modified
        mtime_ns = int(stamp.timestamp()) * 1_000_000_000 if stamp is not None else None
        job.write_file(download.path, target, mode=URL_MODE, mtime_ns=mtime_ns)


def _add_git(job: CopyJob, spec: Add, url: str, dest: str, git_fetch: GitFetch) -> None:
    with tempfile.TemporaryDirectory(prefix="farm-git-") as scratch:
        checkout = Path(scratch) / "checkout"
        tree, commit = git_fetch(url, checkout, keep_git_dir=spec.keep_git_dir)
        if spec.checksum and not commit.startswith(spec.checksum.lower()):
            raise ChecksumMismatch(
                f"ADD {url}: checksum mismatch: expected commit {spec.checksum}, got {commit}"
            )
        job.copy_dir_contents(tree, dest, url)


class _Hashing:
    """A binary writer that hashes what goes through it."""

    def __init__(self, out: Sink, digest: hashlib._Hash) -> None:
        self._out = out
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._out.write(data)
