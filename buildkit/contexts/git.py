"""Git contexts: Docker's git URLs and a shallow fetch of one ref.

`docker build https://host/repo.git#ref:subdir` builds `subdir` of `ref`;
`git@host:repo.git`, `git://…`, `ssh://…` and `github.com/owner/repo` are git
URLs too. `fetch_git` takes any remote git itself accepts (including a local
bare repository, as a path or `file://`), so tests need no network.

git runs with an explicit, minimal environment built from `GitOptions`: no
terminal prompts, no system config, HOME from the options (else an empty
temporary directory), so a build never picks up the caller's git setup by
accident. Pass SSH_AUTH_SOCK and the like through `GitOptions.extra_env`.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from buildkit.contexts.paths import safe_relpath
from buildkit.errors import ContextError

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_HEX_REF = re.compile(r"[0-9a-fA-F]{4,64}")
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]*@")


@dataclass(frozen=True)
class GitSource:
    """A parsed git context URL: what to fetch, which ref, which subdirectory."""

    remote: str
    ref: str | None = None
    subdir: str = ""


@dataclass(frozen=True)
class GitOptions:
    """How to run git: the binary, its PATH and HOME, extra environment, a time limit."""

    git: str = "git"
    path: str = _DEFAULT_PATH
    home: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0


@dataclass(frozen=True)
class GitCheckout:
    commit: str
    commit_time: int


def is_git_url(spec: str) -> bool:
    """Whether `docker build` would treat `spec` as a git repository URL."""
    if spec.startswith(("git://", "git@", "github.com/", "ssh://")):
        return True
    if spec.startswith(("http://", "https://")):
        return re.search(r"\.git(?:#.+)?$", spec) is not None
    return False


def redact_url(url: str) -> str:
    """`url` (or a message quoting one) without the credentials of `scheme://user:token@host`."""
    return _USERINFO.sub(r"\1***@", url)


def parse_git_url(url: str) -> GitSource:
    """Split `remote#ref:subdir` as Docker does; any URL git accepts is a remote.

    An empty ref means the remote's default branch; `github.com/o/r` gets
    `https://`.
    """
    remote, _, fragment = url.partition("#")
    if remote.startswith("github.com/"):
        remote = "https://" + remote
    if not remote or remote.startswith("-"):
        raise ContextError(f"invalid git URL {redact_url(url)!r}")
    ref, _, subdir = fragment.partition(":")
    if ref.startswith("-"):
        raise ContextError(f"invalid git ref {ref!r} in {redact_url(url)!r}")
    subdir = safe_relpath(subdir, what=f"git URL {redact_url(url)!r}: subdirectory")
    return GitSource(remote=remote, ref=ref or None, subdir=subdir)


def fetch_git(
    remote: str, ref: str | None, dest: Path, *, options: GitOptions | None = None
) -> GitCheckout:
    """Check out `ref` (branch, tag or commit; default branch when None) of `remote` into `dest`.

    Fetches with `--depth 1`; a commit the remote will not serve by id (or
    an abbreviated one) falls back to a full fetch. `dest` ends up holding the
    files only (no `.git`), with git's modes (0644, 0755 for executables, 0755
    for directories) whatever the umask.
    """
    options = options or GitOptions()
    shown = redact_url(remote)
    if remote.startswith("-") or (ref or "").startswith("-"):
        raise ContextError(f"invalid git URL or ref: {shown!r} {ref!r}")
    dest.mkdir(parents=True, exist_ok=True)
    home = tempfile.mkdtemp(prefix="farm-git-home-", dir=dest.parent)
    try:
        env = _git_env(options, Path(options.home) if options.home else Path(home))
        run = _Runner(options, env, dest, shown)
        run("init", "-q")
        wanted = ref or "HEAD"
        if run.ok("fetch", "-q", "--depth", "1", "--no-tags", "--", remote, wanted):
            commit = run("rev-parse", "--verify", "FETCH_HEAD^{commit}")
        elif ref is not None and _HEX_REF.fullmatch(ref):
            run("fetch", "-q", "--tags", "--", remote, "+refs/heads/*:refs/remotes/origin/*")
            if not run.ok("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"):
                raise ContextError(f"git: no commit {ref!r} in {shown}")
            commit = run.last_output
        else:
            raise ContextError(f"git: cannot fetch {wanted!r} from {shown}: {run.last_error}")
        run("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit)
        commit_time = int(run("show", "-s", "--format=%ct", commit))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(dest / ".git")
    _normalise_modes(dest)
    return GitCheckout(commit=commit, commit_time=commit_time)


def _git_env(options: GitOptions, home: Path) -> dict[str, str]:
    path = options.path
    if os.path.isabs(options.git):
        path = f"{os.path.dirname(options.git)}:{path}"
    env = {
        "PATH": path,
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }
    env.update(options.extra_env)
    return env


class _Runner:
    """Runs git in one work tree; errors name the (redacted) remote."""

    def __init__(self, options: GitOptions, env: dict[str, str], cwd: Path, shown: str) -> None:
        self.options = options
        self.env = env
        self.cwd = cwd
        self.shown = shown
        self.last_error = ""
        self.last_output = ""

    def _run(self, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.options.git, *args],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.options.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ContextError(
                f"git is needed for {self.shown} but {self.options.git!r} was not found"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise ContextError(
                f"git {args[0]} of {self.shown} timed out after {exc.timeout}s"
            ) from exc

    def ok(self, *args: str) -> bool:
        result = self._run(args)
        self.last_output = result.stdout.strip()
        self.last_error = redact_url(
            result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        )
        return result.returncode == 0

    def __call__(self, *args: str) -> str:
        result = self._run(args)
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
            verb = next(a for a in args if not a.startswith("-") and "=" not in a)
            raise ContextError(f"git {verb} failed for {self.shown}: {redact_url(tail[0])}")
        return result.stdout.strip()


def _normalise_modes(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)
