"""Integration tests of the engine: real builds through `workers.embedded.run_build`.

Every test gets its own FARM_HOME (and file store under it). `build(...)`
writes a context directory holding the Dockerfile, the given files and the
busybox root tarballs (`rootfs-amd64.tar`, `rootfs-arm64.tar`), runs the
build with a `Recorder`, and returns a `Built` that can read back what the
store holds: manifests, configs (as JSON, the way Docker documents them),
layer entries, and the flattened filesystem of each platform.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from buildkit import binfmt
from buildkit.events import Event, Recorder
from buildkit.layers import apply_layer
from buildkit.platforms import Platform, parse_platform, parse_platforms
from buildkit.secrets import SecretSource, SshSource
from buildkit.store.base import read_blob
from buildkit.store.filesystem import FilesystemStore
from tests.fixtures.leaks import processes_with, remove_farm_cgroup_parents
from tests.fixtures.rootfs import busybox_rootfs_tarball
from workers.embedded import LocalBuild, LocalResult, parse_output, run_build
from workers.settings import Settings

AMD64 = "linux/amd64"
ARM64 = "linux/arm64"

#: A context file: text, bytes, or (content, mode).
FileSpec = str | bytes | tuple[str | bytes, int]


def need_sandbox() -> None:
    if os.geteuid() != 0:
        pytest.skip("the engine's sandbox needs root")
    if "overlay" not in Path("/proc/filesystems").read_text():
        pytest.skip("no overlayfs")


def need_arm64() -> None:
    if not binfmt.status().can_run(parse_platform(ARM64)):
        pytest.skip("linux/arm64 is neither native nor emulated here (farm binfmt install)")


def settings_for(home: Path) -> Settings:
    return Settings(home=home, storage=f"file://{home / 'registry'}")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    need_sandbox()
    path = tmp_path / "farm-home"
    path.mkdir()
    return path


@pytest.fixture
def store(home: Path) -> FilesystemStore:
    return FilesystemStore(home / "registry")


def write_context(
    directory: Path, dockerfile: str, files: Mapping[str, FileSpec] | None = None
) -> Path:
    """A context dir: Dockerfile, files (parents created), both busybox tarballs."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    for arch in ("amd64", "arm64"):
        target = directory / f"rootfs-{arch}.tar"
        if target.exists():  # written by an earlier build of the same context
            continue
        try:
            os.link(busybox_rootfs_tarball(arch), target)
        except OSError:
            shutil.copyfile(busybox_rootfs_tarball(arch), target)
    for name, spec in (files or {}).items():
        content, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        path.chmod(mode)
    return directory


@dataclass
class Built:
    local: LocalResult
    events: Recorder
    store: FilesystemStore
    home: Path
    context: Path
    warnings: list[str]

    @property
    def result(self):  # type: ignore[no-untyped-def]
        return self.local.result

    @property
    def digest(self) -> str:
        return str(self.result.descriptor.digest)

    def manifest_digest(self, platform: str = AMD64) -> str:
        want = parse_platform(platform)
        (found,) = [p for p in self.result.platforms if p.platform == want]
        return str(found.manifest.digest)

    def manifest(self, platform: str = AMD64) -> dict[str, Any]:
        return self.blob_json(self.manifest_digest(platform))

    def blob_json(self, digest: str) -> Any:
        return json.loads(read_blob(self.store, digest))  # type: ignore[arg-type]

    def config(self, platform: str = AMD64) -> dict[str, Any]:
        """The image configuration blob, as JSON."""
        return self.blob_json(self.manifest(platform)["config"]["digest"])

    def runtime(self, platform: str = AMD64) -> dict[str, Any]:
        """The config's `config` object (Env, Cmd, User, ...)."""
        return self.config(platform)["config"]

    def env(self, platform: str = AMD64) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.runtime(platform).get("Env", []))

    def layer_digests(self, platform: str = AMD64) -> list[str]:
        return [layer["digest"] for layer in self.manifest(platform)["layers"]]

    def layer_members(self, index: int, platform: str = AMD64) -> dict[str, tarfile.TarInfo]:
        """The entries of one layer (negative index from the top), by name."""
        digest = self.layer_digests(platform)[index]
        with self.store.open_blob(digest) as blob, tarfile.open(fileobj=blob, mode="r|*") as tf:
            return {m.name.rstrip("/"): m for m in tf}

    def layer_file(self, index: int, name: str, platform: str = AMD64) -> bytes:
        digest = self.layer_digests(platform)[index]
        with self.store.open_blob(digest) as blob, tarfile.open(fileobj=blob, mode="r|*") as tf:
            for m in tf:
                if m.name.rstrip("/") == name:
                    f = tf.extractfile(m)
                    assert f is not None
                    return f.read()
        raise KeyError(name)

    def rootfs(self, dest: Path, platform: str = AMD64) -> Path:
        """Flatten the image: apply every layer blob, bottom first, onto `dest`."""
        dest.mkdir(parents=True)
        for digest in self.layer_digests(platform):
            with self.store.open_blob(digest) as blob:  # type: ignore[arg-type]
                apply_layer(blob, dest)
        return dest

    def of(self, kind: str, **match: Any) -> list[Event]:
        return [
            e
            for e in self.events.of_kind(kind)  # type: ignore[arg-type]
            if all(getattr(e, k) == v for k, v in match.items())
        ]

    def logs(self, platform: str = AMD64) -> list[str]:
        return [e.text for e in self.of("step.log", platform=platform)]


def run_context(
    context: Path,
    home: Path,
    *,
    platforms: tuple[str, ...] | list[str] = (AMD64,),
    tags: tuple[str, ...] | list[str] = (),
    outputs: tuple[str, ...] | list[str] = (),
    build_args: Mapping[str, str] | None = None,
    target: str = "",
    allow: tuple[str, ...] = (),
    source_date_epoch: str = "",
    dockerfile: str | None = None,
    recorder: Recorder | None = None,
    no_cache: bool = False,
    no_cache_filter: tuple[str, ...] | list[str] = (),
    jobs: int = 0,
    secrets: Mapping[str, SecretSource] | None = None,
    ssh: Mapping[str, SshSource] | None = None,
) -> Built:
    """Build an existing context dir with FARM_HOME=`home`."""
    need_sandbox()
    request = LocalBuild(
        context=str(context),
        dockerfile=dockerfile,
        platforms=parse_platforms(list(platforms)) if platforms else (),
        build_args=dict(build_args or {}),
        target=target,
        tags=tuple(tags),
        outputs=tuple(parse_output(o) for o in outputs),
        allow=frozenset(allow),
        source_date_epoch=source_date_epoch,
        cwd=context,
        no_cache=no_cache,
        no_cache_filter=frozenset(no_cache_filter),
        jobs=jobs,
        secrets=dict(secrets or {}),
        ssh=dict(ssh or {}),
    )
    events = recorder if recorder is not None else Recorder()
    warnings: list[str] = []
    local = run_build(request, settings_for(home), events, warn=warnings.append)
    return Built(local, events, FilesystemStore(home / "registry"), home, context, warnings)


def build(
    tmp_path: Path,
    dockerfile: str,
    files: Mapping[str, FileSpec] | None = None,
    *,
    home: Path | None = None,
    context_name: str = "context",
    **opts: Any,
) -> Built:
    """Write a context under `tmp_path` and build it (FARM_HOME `tmp_path/farm-home`).

    Called again with the same `tmp_path` it rebuilds in the same FARM_HOME
    (and store, and step cache): the Dockerfile and the given files are
    rewritten, other files of the context stay as they are."""
    context = write_context(tmp_path / context_name, dockerfile, files)
    home = home or tmp_path / "farm-home"
    home.mkdir(exist_ok=True)
    return run_context(context, home, **opts)


#: How a step ended: its last event's kind without "step." (done, cached, error).
Outcome = tuple[str, str, str]


def outcomes(built: Built, platform: str = AMD64) -> list[Outcome]:
    """(stage, step name, done|cached|error) for every step of `platform`
    that ended, in the order of the Dockerfile."""
    ends = {"step.done", "step.cached", "step.error"}
    found: dict[tuple[str, int], tuple[int, Outcome]] = {}
    for e in built.events.events:
        if e.platform == platform and e.kind in ends:
            found[(e.stage, e.step)] = (e.line, (e.stage, e.name, e.kind.removeprefix("step.")))
    return [outcome for _, outcome in sorted(found.values(), key=lambda pair: pair[0])]


def filesystem_step(name: str) -> bool:
    """Whether a step (by its event name) writes files and so goes through the step cache."""
    return name.split(" ", 1)[0] in ("RUN", "COPY", "ADD", "WORKDIR")


#: The usual first lines: the busybox root of the target architecture.
BASE = "FROM scratch\nARG TARGETARCH\nADD rootfs-${TARGETARCH}.tar /\n"


def leftovers(home: Path) -> list[str]:
    """Entries of FARM_HOME/tmp (scratch dirs of steps, contexts, overlay views)."""
    tmp = home / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


@pytest.fixture(scope="session", autouse=True)
def _remove_farm_cgroup_parents() -> Iterator[None]:
    """Remove the farm-owned cgroup parents after the session if nothing else uses them."""
    yield
    remove_farm_cgroup_parents()


__all__ = [
    "AMD64",
    "ARM64",
    "BASE",
    "Built",
    "Platform",
    "build",
    "filesystem_step",
    "outcomes",
    "processes_with",  # from tests.fixtures.leaks, for the tests that import it from here
    "run_context",
]
