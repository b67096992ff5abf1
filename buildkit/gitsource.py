"""Git sources for ADD: `https://host/repo.git#ref:subdir`, `git@host:repo.git`, ...

`is_git_url(source)` recognises what BuildKit treats as a git source:
`git@...`, `git://`, `ssh://`, and `http(s)://` URLs whose path ends in
`.git`. (`file://...git` is recognised too, but only a `GitFetcher` built
with `allow_file=True` fetches it: on a farm worker a file URL would read the
worker's own disk.)

`GitFetcher.resolve(url)` asks the remote (`git ls-remote`) what the ref
names now, without fetching: the cache key of an ADD from git, so a moved
branch or tag is a miss.

`GitFetcher.fetch(url, into)` makes a shallow fetch of `ref` (a branch, a tag
or a commit hash; the remote's HEAD when there is none) into a fresh
repository at `into`, checks it out detached, and returns the directory to
copy (`subdir` resolved inside the checkout) and the commit hash. Given the
identity `resolve` returned for the step's key (`expect`), it fails if the
ref has moved since, rather than add a tree the key does not name. File modes
are normalised as BuildKit documents: 0644, 0755 for executables and
directories. `.git` is removed unless `keep_git_dir`.

git runs with no system or global config, no terminal prompts, and only the
transports allowed here (`protocol.allow=never` plus an allow list), so a
Dockerfile cannot reach `ext::` helpers or local paths.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from buildkit.errors import InternalError, UserError
from buildkit.fsutil import resolve_in_root

__all__ = ["GitError", "GitFetcher", "is_git_url", "split_git_url"]

_SHA = re.compile(r"[0-9a-f]{7,64}\Z")
_SAFE_REF = re.compile(r"[A-Za-z0-9._/@+-]+\Z")


class GitError(UserError):
    """A git source that cannot be fetched: a bad URL, an unknown ref or subdirectory."""


def is_git_url(source: str) -> bool:
    if source.startswith(("git@", "git://", "ssh://")):
        return True
    if source.startswith(("http://", "https://", "file://")):
        path = urlsplit(source.partition("#")[0]).path
        return path.rstrip("/").endswith(".git")
    return False


def split_git_url(url: str) -> tuple[str, str, str]:
    """(remote, ref, subdir) of `remote#ref:subdir`; ref and subdir may be ""."""
    remote, _, fragment = url.partition("#")
    ref, _, subdir = fragment.partition(":")
    return remote, ref, subdir


def _scheme(remote: str) -> str:
    if remote.startswith("git@") or ("://" not in remote and ":" in remote):
        return "ssh"
    return remote.split("://", 1)[0].lower()


@dataclass(frozen=True)
class GitFetcher:
    allow_file: bool = False
    git: str = "git"
    timeout: float = 600.0
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. SSH_AUTH_SOCK

    def _protocols(self) -> list[str]:
        allowed = ["https", "http", "ssh", "git"] + (["file"] if self.allow_file else [])
        opts = ["-c", "protocol.allow=never"]
        for name in allowed:
            opts += ["-c", f"protocol.{name}.allow=always"]
        return opts

    def _run(self, args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
        binary = shutil.which(self.git)
        if binary is None:
            raise InternalError("git is not installed: it is needed for ADD from a git URL")
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "HOME": str(home),
            "LC_ALL": "C",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            **self.extra_env,
        }
        return subprocess.run(
            [binary, *self._protocols(), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )

    def _split(self, url: str) -> tuple[str, str, str]:
        """(remote, ref, subdir) of `url`, or a GitError if it may not be fetched."""
        remote, ref, subdir = split_git_url(url)
        scheme = _scheme(remote)
        if remote.startswith("-") or scheme not in ("https", "http", "ssh", "git", "file"):
            raise GitError(f"unsupported git URL {url!r}")
        if scheme == "file" and not self.allow_file:
            raise GitError(f"git URL {url!r}: file:// repositories are not allowed")
        if ref and (ref.startswith("-") or not _SAFE_REF.match(ref)):
            raise GitError(f"git URL {url!r}: invalid ref {ref!r}")
        return remote, ref, subdir

    def resolve(self, url: str) -> str:
        """What the ref of `url` names on the remote now: its identity in a cache key.

        The ref (HEAD when there is none) followed by the `git ls-remote`
        lines (`<commit>\t<refname>`) of every ref it can match, so moving
        any of them changes the answer. A commit hash that names no ref
        matches nothing and stands for itself.
        """
        remote, ref, _ = self._split(url)
        pattern = ref or "HEAD"
        with tempfile.TemporaryDirectory(prefix="farm-git-") as scratch:
            listed = self._run(["ls-remote", "--", remote, pattern], Path(scratch), Path(scratch))
        self._check(listed, url, what=f"resolve {pattern} of")
        return f"{pattern}\n{listed.stdout}"

    def fetch(
        self, url: str, into: Path, *, keep_git_dir: bool = False, expect: str | None = None
    ) -> tuple[Path, str]:
        """Check out `url` into the new directory `into`; return (tree to copy, commit).
        With `expect` (what `resolve` said), the fetched ref must still be what it listed."""
        remote, ref, subdir = self._split(url)
        into.mkdir(parents=True)
        home = into.parent
        self._check(self._run(["init", "-q", "."], into, home), url)
        fetched = self._run(
            ["fetch", "-q", "--depth", "1", "--no-tags", "--", remote, ref or "HEAD"], into, home
        )
        target = "FETCH_HEAD"
        if fetched.returncode != 0 and _SHA.match(ref):
            # Servers that refuse unadvertised objects: fetch everything, then pick the commit.
            fetched = self._run(
                ["fetch", "-q", "--tags", "--", remote, "+refs/heads/*:refs/remotes/origin/*"],
                into,
                home,
            )
            target = ref
        self._check(fetched, url, what=f"fetch {ref or 'HEAD'}")
        wanted = _chosen(expect, ref or "HEAD") if expect else None
        if wanted and target == "FETCH_HEAD":
            got = self._run(["rev-parse", "FETCH_HEAD"], into, home)
            self._check(got, url)
            if got.stdout.strip() != wanted:
                raise GitError(
                    f"git URL {url!r}: {ref or 'HEAD'} moved on the remote while the build "
                    f"ran (was {wanted[:12]}, now {got.stdout.strip()[:12]}); build again"
                )
        self._check(self._run(["checkout", "-q", "--detach", target], into, home), url)
        head = self._run(["rev-parse", "HEAD"], into, home)
        self._check(head, url)
        commit = head.stdout.strip()
        if not keep_git_dir:
            shutil.rmtree(into / ".git")
        tree = resolve_in_root(into, subdir) if subdir else into
        if not tree.is_dir():
            raise GitError(f"git URL {url!r}: {subdir} is not a directory in the repository")
        _normalise_modes(into)
        return tree, commit

    @staticmethod
    def _check(result: subprocess.CompletedProcess[str], url: str, what: str = "") -> None:
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()
            reason = detail[-1] if detail else f"git exited {result.returncode}"
            raise GitError(f"failed to {what or 'check out'} {url}: {reason}")


def _chosen(listing: str, ref: str) -> str | None:
    """The object `git fetch <remote> <ref>` takes, from `resolve`'s listing
    (`git ls-remote` matches any ref ending in `ref`; fetch takes the first of
    `<ref>`, `refs/<ref>`, `refs/tags/<ref>`, `refs/heads/<ref>`,
    `refs/remotes/<ref>`, `refs/remotes/<ref>/HEAD`, as git's rev-parse rules
    say); None when it lists none of them (a commit hash)."""
    names: dict[str, str] = {}
    for line in listing.splitlines()[1:]:
        sha, _, name = line.partition("\t")
        names.setdefault(name.strip(), sha.strip())
    for candidate in (ref, f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}",
                      f"refs/remotes/{ref}", f"refs/remotes/{ref}/HEAD"):  # fmt: skip
        if candidate in names:
            return names[candidate]
    return None


def _normalise_modes(top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == top and ".git" in dirnames:
            dirnames.remove(".git")
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                os.chmod(path, 0o755 if info.st_mode & 0o111 else 0o644)
