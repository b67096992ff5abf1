"""Running an image from the store, for checking a build's result (`farm run`).

The image's layers are unpacked once into a snapshot; the command runs in the
same sandbox as a RUN step, on a throw-away upper directory, with the image's
Entrypoint, Cmd, Env, WorkingDir and User.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from buildkit.errors import UserError
from buildkit.images import StoredImage, load_image, local_repository
from buildkit.overlay import merged
from buildkit.platforms import Platform
from buildkit.reference import parse_reference
from buildkit.sandbox import NamespaceSandbox, NetworkMode, StepSpec, default_resolv_conf
from buildkit.snapshots import Snapshots
from buildkit.store.base import Store
from buildkit.users import resolve_user


def container_argv(image: StoredImage, command: tuple[str, ...]) -> tuple[str, ...]:
    """Docker's rule: Entrypoint + (the command given, else Cmd)."""
    rc = image.config.config
    argv = (*(rc.entrypoint or ()), *(command or rc.cmd or ()))
    if not argv:
        raise UserError("no command given and the image has no Entrypoint or Cmd")
    return argv


def run_image(
    store: Store,
    home: Path,
    ref: str,
    platform: Platform,
    command: tuple[str, ...],
    output: Callable[[bytes], None],
) -> int:
    parsed = parse_reference(ref)
    image = load_image(
        store, local_repository(parsed), parsed.digest or parsed.tag or "latest", platform
    )
    snapshots = Snapshots(home)
    pairs = list(zip((d.digest for d in image.manifest.layers), image.config.diff_ids, strict=True))
    lower = snapshots.flattened(store, pairs) if pairs else snapshots.root / "empty"
    lower.mkdir(parents=True, exist_ok=True)
    rc = image.config.config
    uid, gid = 0, 0
    groups: tuple[int, ...] = ()
    if rc.user:
        with merged(home, [lower]) as root:
            uid, gid, groups = resolve_user(root, rc.user)
    with snapshots.new_dir("run-") as tmp:
        upper, work = tmp / "upper", tmp / "work"
        os.mkdir(upper)
        os.mkdir(work)
        spec = StepSpec(
            lower_dirs=(str(lower),),
            upper_dir=str(upper),
            work_dir=str(work),
            argv=container_argv(image, command),
            env=rc.env,
            cwd=rc.working_dir or "/",
            uid=uid,
            gid=gid,
            extra_gids=tuple(groups),
            hostname="farm",
            network=NetworkMode.DEFAULT,
            resolv_conf=default_resolv_conf(NetworkMode.DEFAULT),
        )
        result = NamespaceSandbox(scratch_root=home / "sandbox").run(spec, output)
    return result.exit_code
