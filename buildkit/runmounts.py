"""`RUN --mount=...` → the sandbox mounts, environment and secrets of one step.

`prepare_mounts(run, sources, uid=..., gid=...)` is a context manager: it
yields `PreparedMounts` for the step's `StepSpec` and, on exit (also on
error), removes everything it made: copies, secret files, agent relays, and
releases cache locks. BuildKit's meaning of each type:

* `bind` (the default): `source` (default `/`) inside the build context or
  the `from=` stage/image, resolved inside that root (`fsutil`), read-only.
  With `rw`/`readwrite=true` the step gets a throw-away copy: its writes reach
  neither the context nor the stage.
* `cache`: a directory kept across builds on this host (`cachemounts`), by
  `id` (default: the target), with `sharing`, `uid`/`gid`/`mode` for a new
  one, and `from`+`source` to seed a new one from a stage.
* `tmpfs`: a fresh tmpfs of `size` bytes (`64m`, `1g`, ... as go-units
  reads them; none means the kernel default).
* `secret`: a `SecretSource` by `id` (or `source`, or the target's base name):
  a file on a private tmpfs (mode 0400, 0:0 unless `mode`/`uid`/`gid`),
  bound read-only at `target` (default `/run/secrets/<id>`); with `env=NAME`
  an environment variable instead (and the file too if `target` is given).
* `ssh`: a relay to the `SshSource` by `id` (default `default`) at `target`
  (default `/run/buildkit/ssh_agent.<n>`), socket 0600 0:0 unless set;
  SSH_AUTH_SOCK names the first one.

A missing secret or agent is skipped, or with `required=true` is an error
naming the id. Mounts are never part of the layer: the sandbox mounts them
over stub mount points that it keeps out of the upper dir.

Secret values appear only in the secret files, in `PreparedMounts.env` for
`env=` secrets, and in `PreparedMounts.secrets` (for `secrets.SecretMasker`);
neither field is in the repr, and no error message carries a value.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from buildkit.cachemounts import CacheSpec, Sharing, open_cache
from buildkit.dockerfile.flags import parse_bool
from buildkit.dockerfile.instructions import Mount, Run
from buildkit.errors import DockerfileError, StorageError, UserError
from buildkit.fsutil import PathResolutionError, mkdir_all, resolve_in_root
from buildkit.sandbox.base import BindMount, TmpfsMount
from buildkit.scratch import remove_tree
from buildkit.secrets import SecretSource, SshSource, mask_variants, read_secret
from buildkit.sshagent import forward_agent
from buildkit.treecopy import chown_if_root, copy_tree

__all__ = [
    "MountSources",
    "PreparedMounts",
    "SecretSource",
    "SshSource",
    "parse_size",
    "prepare_mounts",
]

_SHARING: tuple[Sharing, ...] = ("shared", "private", "locked")
_SIZE = re.compile(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?")
_ENV_NAME = re.compile(r"[^=\0]+")


@dataclass(frozen=True)
class MountSources:
    """Where mounts come from. `stage_root(name)` yields the read-only root of a
    stage (by name or index) or an image; it raises KeyError (or DockerfileError)
    for a name that is neither."""

    context_root: Path
    stage_root: Callable[[str], AbstractContextManager[Path]]
    secrets: Mapping[str, SecretSource]
    ssh: Mapping[str, SshSource]
    cache_root: Path  # e.g. $FARM_HOME/cache-mounts
    scratch: Path  # a directory for temporary files


@dataclass(frozen=True)
class PreparedMounts:
    """What the step needs: mounts for `StepSpec.mounts`, variables to add to
    `StepSpec.env`, and the secret values to mask in its output."""

    mounts: tuple[BindMount | TmpfsMount, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secrets: tuple[bytes, ...] = field(default=(), repr=False)


@contextlib.contextmanager
def prepare_mounts(
    run: Run,
    sources: MountSources,
    *,
    uid: int,
    gid: int,
    path: str = "Dockerfile",
    workdir: str = "/",
) -> Iterator[PreparedMounts]:
    """Prepare `run.mounts`; everything temporary goes when the context exits.

    `uid`/`gid` are the step's user. As in BuildKit they do not change who owns
    a mount (secret files, agent sockets and new caches are 0:0 unless the
    mount says otherwise; moby/buildkit#760): a non-root USER needs `uid=`.
    `workdir` is the step's WORKDIR, against which a relative target is joined.
    """
    if uid < 0 or gid < 0:
        raise ValueError("uid and gid must not be negative")
    with contextlib.ExitStack() as stack:
        prep = _Preparer(run, sources, stack, path=path, workdir=workdir)
        try:
            for mount in run.mounts:
                prep.add(mount)
        except OSError as exc:
            raise StorageError(f"{path}:{run.line}: RUN --mount: {exc}") from exc
        yield PreparedMounts(
            tuple(prep.mounts), tuple(prep.env), tuple(dict.fromkeys(prep.secrets))
        )


class _Preparer:
    def __init__(
        self, run: Run, sources: MountSources, stack: contextlib.ExitStack, *, path: str,
        workdir: str,
    ) -> None:  # fmt: skip
        self.run = run
        self.sources = sources
        self.stack = stack
        self.path = path
        self.workdir = posixpath.join("/", workdir)
        self.mounts: list[BindMount | TmpfsMount] = []
        self.env: list[tuple[str, str]] = []
        self.secrets: list[bytes] = []
        self._tmp: Path | None = None
        self._private: Path | None = None
        self._count = 0
        self._ssh_count = 0

    # ------------------------------------------------------------ helpers

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(message, path=self.path, line=self.run.line, instruction="RUN")

    def tmp(self) -> Path:
        """This step's scratch directory (0700), removed on exit."""
        if self._tmp is None:
            self.sources.scratch.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(dir=self.sources.scratch, prefix="runmount-"))
            self.stack.callback(remove_tree, self._tmp)
        return self._tmp

    def private(self) -> Path:
        """A 0700 directory for secrets and sockets: a tmpfs when we may mount
        one (secrets then never touch a disk), else a plain directory."""
        if self._private is None:
            private = self.tmp() / "private"
            private.mkdir(mode=0o700)
            if os.geteuid() == 0:
                from buildkit.sandbox import linux

                flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
                with contextlib.suppress(OSError):
                    linux.mount("farm-secrets", str(private), "tmpfs", flags, "mode=0700,size=64m")
                    self.stack.callback(linux.umount2, str(private), linux.MNT_DETACH)
            self._private = private
        return self._private

    def fresh(self, prefix: str) -> Path:
        self._count += 1
        return self.tmp() / f"{prefix}-{self._count}"

    def options(self, mount: Mount) -> dict[str, str]:
        return {kv.key: kv.value for kv in mount.options}

    def flag(self, key: str, value: str) -> bool:
        parsed = parse_bool(value)
        if parsed is None:
            raise self.error(f"invalid value for {key}: {value!r} (expected true or false)")
        return parsed

    def readonly(self, mount: Mount, default: bool) -> bool:
        readonly = default
        for kv in mount.options:  # in order: the last of ro/rw wins
            if kv.key == "readonly":
                readonly = self.flag(kv.key, kv.value)
            elif kv.key == "readwrite":
                readonly = not self.flag(kv.key, kv.value)
        return readonly

    def number(self, opts: dict[str, str], key: str, base: int) -> int | None:
        value = opts.get(key)
        if value is None:
            return None
        try:
            number = int(value, base)
        except ValueError:
            number = -1
        if not 0 <= number <= 0xFFFFFFFF:
            kind = "an octal number" if base == 8 else "a number"
            raise self.error(f"invalid value {value!r} for {key} (expected {kind})")
        return number

    def target(self, opts: dict[str, str], kind: str, default: str = "") -> str:
        value = opts.get("target") or default
        if not value:
            raise self.error(f"{kind} mount needs a target")
        target = posixpath.normpath(posixpath.join(self.workdir, value))
        if target in ("/", "//"):
            raise self.error(f"invalid mount target {value!r}: cannot mount over /")
        return target

    def stage(self, stack: contextlib.ExitStack, name: str) -> Path:
        try:
            return stack.enter_context(self.sources.stage_root(name))
        except KeyError:
            raise self.error(f"mount from={name!r}: no stage or image of that name") from None

    def resolve(self, root: Path, source: str, where: str) -> Path:
        try:
            host = resolve_in_root(root, source or "/")
        except PathResolutionError as exc:
            raise self.error(f"mount source in {where}: {exc}") from None
        if not os.path.lexists(host):
            raise self.error(f"mount source {source or '/'!r} not found in {where}")
        return host

    # ------------------------------------------------------------ types

    def add(self, mount: Mount) -> None:
        handlers = {
            "bind": self.bind, "cache": self.cache, "tmpfs": self.tmpfs,
            "secret": self.secret, "ssh": self.ssh,
        }  # fmt: skip
        handler = handlers.get(mount.type.lower())
        if handler is None:
            raise self.error(
                f"unsupported mount type {mount.type!r} (expected bind, cache, tmpfs, secret or ssh)"
            )
        handler(mount)

    def bind(self, mount: Mount) -> None:
        opts = self.options(mount)
        target = self.target(opts, "bind")
        readonly = self.readonly(mount, True)
        source = opts.get("source", "")
        from_ = opts.get("from", "")
        if from_:
            root, where = self.stage(self.stack, from_), f"{from_!r}"
        else:
            root, where = self.sources.context_root, "the build context"
        host = self.resolve(root, source, where)
        if not readonly:
            # Writes go to a copy and are thrown away with it.
            copy = self.fresh("bind")
            copy_tree(host, copy)
            host = copy
        self.mounts.append(BindMount(str(host), target, readonly=readonly))

    def cache(self, mount: Mount) -> None:
        opts = self.options(mount)
        target = self.target(opts, "cache")
        readonly = self.readonly(mount, False)
        sharing = opts.get("sharing", "shared").lower()
        if sharing not in _SHARING:
            raise self.error(f"unsupported sharing value {sharing!r} (expected shared, private or locked)")  # fmt: skip
        from_ = opts.get("from", "")
        source = opts.get("source", "")
        spec = CacheSpec(
            id=opts.get("id") or target,
            sharing=sharing,  # type: ignore[arg-type]
            uid=self.number(opts, "uid", 10),
            gid=self.number(opts, "gid", 10),
            mode=self.number(opts, "mode", 8),
            seed=f"{from_}\0{source}" if from_ else "",
        )

        def seed(data: Path) -> None:
            with contextlib.ExitStack() as stack:
                host = self.resolve(self.stage(stack, from_), source, f"{from_!r}")
                info = os.stat(host)
                if not stat.S_ISDIR(info.st_mode):
                    raise self.error(f"cache mount source {source!r} in {from_!r} is not a directory")  # fmt: skip
                for entry in os.scandir(host):
                    copy_tree(Path(entry.path), data / entry.name)
                chown_if_root(data, info.st_uid, info.st_gid)
                os.chmod(data, stat.S_IMODE(info.st_mode))

        data = self.stack.enter_context(
            open_cache(self.sources.cache_root, spec, seed if from_ else None)
        )
        if source and not from_:
            # BuildKit mounts that path of the cache; a new cache has none yet.
            mkdir_all(data, source)
            data = resolve_in_root(data, source)
        self.mounts.append(BindMount(str(data), target, readonly=readonly))

    def tmpfs(self, mount: Mount) -> None:
        opts = self.options(mount)
        target = self.target(opts, "tmpfs")
        size = opts.get("size", "")
        try:
            size_bytes = parse_size(size) if size else 0
        except ValueError:
            raise self.error(
                f"invalid value for size: {size!r} (expected e.g. 64m or 1g)"
            ) from None
        self.mounts.append(TmpfsMount(target, size_bytes))

    def secret(self, mount: Mount) -> None:
        opts = self.options(mount)
        given_target = opts.get("target", "")
        secret_id = opts.get("source") or opts.get("id") or posixpath.basename(given_target)
        if not secret_id:
            raise self.error("secret mount needs an id or a target")
        env_name = opts.get("env", "")
        if env_name and not _ENV_NAME.fullmatch(env_name):
            raise self.error(f"invalid env name {env_name!r} for secret {secret_id!r}")
        required = self.flag("required", opts.get("required", "false"))
        found = self.sources.secrets.get(secret_id)
        if found is None:
            if required:
                raise self.error(
                    f"secret {secret_id!r} is required but was not provided "
                    f"(pass --secret id={secret_id},src=FILE to farm build)"
                )
            return
        try:
            value = read_secret(found)
        except UserError as exc:
            raise self.error(str(exc)) from None
        self.secrets.extend(mask_variants(value))
        if env_name:
            if b"\0" in value:
                raise self.error(f"secret {secret_id!r} holds a NUL byte: it cannot be {env_name}")
            self.env.append((env_name, value.decode("utf-8", "surrogateescape")))
            if not given_target:
                return
        target = self.target(opts, "secret", f"/run/secrets/{posixpath.basename(secret_id)}")
        self._count += 1
        file = self.private() / f"secret-{self._count}"
        fd = os.open(
            file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            view = memoryview(value)
            while view:
                view = view[os.write(fd, view) :]
            if os.geteuid() == 0:  # (only root runs steps; tests may not be root)
                uid, gid = self.number(opts, "uid", 10) or 0, self.number(opts, "gid", 10) or 0
                os.fchown(fd, uid, gid)
            mode = self.number(opts, "mode", 8)
            os.fchmod(fd, 0o400 if mode is None else mode)
        finally:
            os.close(fd)
        self.mounts.append(BindMount(str(file), target, readonly=True))

    def ssh(self, mount: Mount) -> None:
        opts = self.options(mount)
        index = self._ssh_count
        self._ssh_count += 1
        agent_id = opts.get("id") or "default"
        required = self.flag("required", opts.get("required", "false"))
        found = self.sources.ssh.get(agent_id)
        if found is None:
            if required:
                raise self.error(
                    f"ssh agent {agent_id!r} is required but was not provided "
                    f"(pass --ssh {agent_id}=$SSH_AUTH_SOCK to farm build)"
                )
            return
        target = self.target(opts, "ssh", f"/run/buildkit/ssh_agent.{index}")
        mode = self.number(opts, "mode", 8)
        socket_path = self.stack.enter_context(
            forward_agent(
                found.socket, self.private(), f"ssh-{index}.sock",
                uid=self.number(opts, "uid", 10) or 0, gid=self.number(opts, "gid", 10) or 0,
                mode=0o600 if mode is None else mode,
            )
        )  # fmt: skip
        # connect(2) needs write permission on the socket, not a writable mount.
        self.mounts.append(BindMount(str(socket_path), target, readonly=True))
        if not any(name == "SSH_AUTH_SOCK" for name, _ in self.env):
            self.env.append(("SSH_AUTH_SOCK", target))


# ---------------------------------------------------------------- helpers


def parse_size(text: str) -> int:
    """Bytes in a size as go-units' RAMInBytes reads it: `1024`, `64m`, `1.5GiB`
    (k, m, g, t, p are powers of 1024). ValueError when it is not one."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}")
    number = float(match[1])  # "1.2.3" matches but is no number: ValueError
    unit = (match[2] or "").lower()
    return int(number * 1024 ** (" kmgtp".index(unit) if unit else 0))
