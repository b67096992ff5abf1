"""Farm's images match buildah's, file by file and field by field.

Each case is a Dockerfile (on the busybox root: `FROM scratch`, `ARG
TARGETARCH`, `ADD rootfs-${TARGETARCH}.tar /`) and its context. Farm builds it
for linux/amd64 as an OCI archive; `buildah bud` builds it into a private vfs
storage and pushes it to an OCI layout. Both images are flattened here (layers
applied in order, whiteouts and opaque directories honoured) and compared:

- every path: type, sha256 of a file, permission bits (setuid, setgid and
  sticky included), uid, gid, symlink target, device numbers, hardlink group;
- the image config's Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts,
  Volumes, Labels and StopSignal.

Differences allowed everywhere, and why:

- mtimes, layer boundaries and history: Farm clamps times to
  SOURCE_DATE_EPOCH and writes a layer per step, buildah (`--layers=false`)
  stamps the build time and commits one layer per stage; what a Dockerfile
  specifies is the flattened result.
- labels buildah adds on its own (`io.buildah.version`).
- the mountpoint stubs buildah leaves behind after a RUN (`/etc/hosts`,
  `/etc/resolv.conf`, `/etc/hostname`, `/run`, `/sys`, `/dev`, `/proc`),
  when they are empty and Farm's image does not have them: BuildKit removes
  the mount stubs the runtime had to create (`executor/stubs.go`).

A case may ignore more only with a comment saying where buildah departs from
BuildKit's documented behaviour. Anything else fails with the list of paths
and fields that differ.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import Buildah, FarmBuilder, add_rootfs_tarballs
from tests.interop.oci import (
    config_fields,
    diff_configs,
    diff_snapshots,
    flatten,
    is_empty_stub,
    load_image,
    snapshot,
    unpack_archive,
)

BASE = """\
FROM scratch
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
"""

#: Labels buildah adds to every image it commits.
BUILDAH_LABELS = ("io.buildah.version",)
#: Mountpoints buildah's chroot isolation leaves in the image as empty stubs.
MOUNTPOINT_STUBS = (
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/hostname",
    "/run",
    "/sys",
    "/dev",
    "/proc",
)

#: A context file: text, or (text, mode).
FileSpec = str | tuple[str, int]


@dataclass(frozen=True)
class Case:
    dockerfile: str
    files: Mapping[str, FileSpec] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None  # symlinks, archives, empty dirs
    build_args: Mapping[str, str] = field(default_factory=dict)
    #: paths Farm's image must hold (with this text, unless None), so that a
    #: comparison of two empty images fails
    expect: Mapping[str, str | None] = field(default_factory=dict)
    #: config fields Farm must have, where buildah departs from BuildKit
    expect_config: Mapping[str, Any] = field(default_factory=dict)
    #: only where buildah cannot read the Dockerfile: an equivalent it can (say why)
    buildah_dockerfile: str | None = None
    #: path -> fields to skip (a comment must say where buildah departs from BuildKit)
    ignore_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ignore_paths: frozenset[str] = frozenset()
    ignore_config: frozenset[str] = frozenset()


# ------------------------------------------------------------ context helpers


def _archive(ctx: Path) -> None:
    """archive.tar.gz with a file, an executable, a setuid file, an empty
    directory, a symlink, a hardlink and odd owners; plus plain.txt."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(
            name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, *,
            data: bytes | None = None, linkname: str = "",
        ) -> None:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, uid, gid
            info.mtime, info.linkname = 1_000_000, linkname
            if data is not None:
                info.size = len(data)
            tar.addfile(info, None if data is None else io.BytesIO(data))

        add("top", tarfile.DIRTYPE, 0o755)
        add("top/file", tarfile.REGTYPE, 0o644, data=b"from the archive\n")
        add("top/exec", tarfile.REGTYPE, 0o755, 1000, 1000, data=b"#!/bin/sh\necho hi\n")
        add("top/suid", tarfile.REGTYPE, 0o4750, 0, 50, data=b"suid\n")
        add("top/empty", tarfile.DIRTYPE, 0o700, 33, 33)
        add("top/link", tarfile.SYMTYPE, 0o777, linkname="file")
        add("top/hard", tarfile.LNKTYPE, 0o644, linkname="top/file")
        add("loose.txt", tarfile.REGTYPE, 0o600, 7, 7, data=b"loose\n")
    (ctx / "archive.tar.gz").write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    (ctx / "plain.txt").write_text("plain, not an archive\n")


def _archives(ctx: Path) -> None:
    """The same small tree as .tar, .tar.xz and .tar.bz2, and a .tar.gz that is not one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("pkg/README", b"readme\n"), ("pkg/bin/run", b"#!/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1_000_000
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    (ctx / "plain.tar").write_bytes(raw)
    (ctx / "packed.tar.xz").write_bytes(lzma.compress(raw))
    (ctx / "packed.tar.bz2").write_bytes(bz2.compress(raw))
    (ctx / "fake.tar.gz").write_text("not an archive\n")


def _links(ctx: Path) -> None:
    """Symlinks, hardlinks and an empty directory in the context."""
    links = ctx / "links"
    (links / "real").mkdir(parents=True)
    (links / "real/data").write_text("data\n")
    (links / "rel").symlink_to("real/data")
    (links / "abs").symlink_to("/etc/passwd")
    (links / "dirlink").symlink_to("real")
    (links / "dangling").symlink_to("nowhere")
    os.link(links / "real/data", links / "hard")
    (ctx / "emptydir/inner-empty").mkdir(parents=True)
    (ctx / "emptydir").chmod(0o750)


def _tree(ctx: Path) -> None:
    (ctx / "dir/empty").mkdir(parents=True)


def _tree_and_link(ctx: Path) -> None:
    _tree(ctx)
    (ctx / "links/rel").symlink_to("../a.txt")


# ------------------------------------------------------------ the cases

TREE: dict[str, FileSpec] = {
    "a.txt": "alpha\n",
    "b.txt": "bravo\n",
    "c.md": "charlie\n",
    "dir/x": "x\n",
    "dir/sub/y": "y\n",
    "exec.sh": ("#!/bin/sh\necho exec\n", 0o755),
    "private": ("secret\n", 0o600),
}

PASSWD_APP = (
    "RUN echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd"
    " && echo 'app:x:1000:' >> /etc/group && echo 'staff:x:50:app' >> /etc/group\n"
)

CASES: dict[str, Case] = {
    "env_label_expose_volume": Case(
        BASE
        + """\
ENV A=1 B="two words" C=three\\ words
ENV LEGACY value with spaces
ENV D=${A}-${B} E=$LEGACY F=${MISSING:-fallback}
LABEL org.example.one="1" "org.example.two"="two words" three=3
LABEL multi="a" \\
      multi2="b"
EXPOSE 80 443/tcp 53/udp
EXPOSE 8080
VOLUME /data
VOLUME ["/logs", "/cache"]
STOPSIGNAL SIGINT
RUN echo "$A|$B|$C|$LEGACY|$D|$E|$F" > /vars
""",
        expect={
            "/vars": "1|two words|three words|value with spaces|1-two words|value with spaces|fallback\n"
        },
        # buildah creates each VOLUME's directory in the image; BuildKit's
        # dispatchVolume only records it in the config (the runtime creates
        # it), and Docker's builder documents no such directory either.
        ignore_paths=frozenset({"/data", "/logs", "/cache"}),
        expect_config={"Volumes": {"/data": {}, "/logs": {}, "/cache": {}}},
    ),
    "args": Case(
        """\
ARG GLOBAL=global-default
"""
        + BASE
        + """\
ARG GLOBAL
ARG VERSION=1.0
ARG FLAVOR=plain
ARG UNSET
ENV VERSION_ENV=${VERSION} FLAVOR_ENV=${FLAVOR:-none} UNSET_ENV=${UNSET:-fallback}
LABEL version=$VERSION global=$GLOBAL
WORKDIR /opt/$FLAVOR
RUN echo "$VERSION $FLAVOR $GLOBAL ${UNSET:-unset}" > args.txt \\
 && env | grep -E '^(VERSION|FLAVOR|GLOBAL|UNSET)=' | sort > env.txt
""",
        build_args={"VERSION": "2.0", "GLOBAL": "from-the-command-line"},
        expect=dict.fromkeys(["/opt/plain/args.txt", "/opt/plain/env.txt"]),
    ),
    "cmd_entrypoint_exec": Case(
        BASE
        + """\
ENTRYPOINT ["/bin/echo", "entry"]
CMD ["default", "args"]
""",
        expect=dict.fromkeys(["/bin/busybox"]),
    ),
    "entrypoint_resets_inherited_cmd": Case(
        "FROM scratch AS base\nARG TARGETARCH\nADD rootfs-${TARGETARCH}.tar /\n"
        + """\
CMD ["/bin/echo", "inherited"]
FROM base
ENTRYPOINT ["/bin/echo", "entry"]
""",
        expect=dict.fromkeys(["/bin/busybox"]),
    ),
    "shell_forms_stopsignal": Case(
        BASE
        + """\
SHELL ["/bin/sh", "-ec"]
RUN echo "sh: $0 $-" > /shell-1
CMD echo hello from cmd
SHELL ["/bin/ash", "-c"]
RUN echo "ash: $0" > /shell-2
ENTRYPOINT echo entry "$HOME"
STOPSIGNAL 9
""",
        expect={"/shell-1": "sh: /bin/sh ce\n", "/shell-2": "ash: /bin/ash\n"},
        # Docker documents that SHELL applies to the shell form of RUN, CMD and
        # ENTRYPOINT (BuildKit's dispatchCmd/dispatchEntrypoint use withShell on
        # the image's Shell); buildah 1.28 applies it to RUN only and writes
        # /bin/sh -c into CMD and ENTRYPOINT.
        ignore_config=frozenset({"Cmd", "Entrypoint"}),
        expect_config={
            "Cmd": ["/bin/sh", "-ec", "echo hello from cmd"],
            "Entrypoint": ["/bin/ash", "-c", 'echo entry "$HOME"'],
        },
    ),
    "user_workdir": Case(
        BASE
        + PASSWD_APP
        + """\
WORKDIR /srv
WORKDIR app
WORKDIR nested/deeper
RUN pwd > /pwd.txt
USER app
RUN id > /tmp/id-name.txt && touch /tmp/owned-by-name
USER 1000:50
RUN id > /tmp/id-numeric.txt && touch /tmp/owned-by-numeric
USER root
WORKDIR /home/app/work
USER app
WORKDIR /home/app/made-by-app/inner
WORKDIR relative-as-app
USER 1000:50
""",
        expect={
            "/pwd.txt": "/srv/app/nested/deeper\n",
            # BuildKit's runc executor: a name takes the supplementary groups
            # /etc/group lists it in; uid:gid takes none (executor/oci/user.go
            # GetUser: the ParseUIDGID fast path returns no sgids).
            "/tmp/id-name.txt": "uid=1000(app) gid=1000(app) groups=50(staff)\n",
            "/tmp/id-numeric.txt": "uid=1000(app) gid=50(staff)\n",
        },
        # buildah also puts the primary group among the supplementary ones
        # (`groups=50(staff),1000(app)`); BuildKit does not (see above).
        ignore_fields={
            "/tmp/id-name.txt": frozenset({"sha256", "size"}),
            "/tmp/id-numeric.txt": frozenset({"sha256", "size"}),
        },
    ),
    "run_forms": Case(
        BASE
        + """\
RUN echo shell-form > /run-shell
RUN ["/bin/sh", "-c", "echo exec-form > /run-exec"]
RUN ["/bin/touch", "/run-exec-touch"]
RUN <<EOT
mkdir -p /heredoc
echo one > /heredoc/one
echo two > /heredoc/two
EOT
RUN <<EOT sh
echo piped > /heredoc/three
EOT
COPY <<EOF /heredoc/copied
copied body
EOF
""",
        # buildah 1.28 (Debian 12) has no heredocs (they came with buildah 1.33):
        # it gets the same steps without them.
        buildah_dockerfile=BASE
        + """\
RUN echo shell-form > /run-shell
RUN ["/bin/sh", "-c", "echo exec-form > /run-exec"]
RUN ["/bin/touch", "/run-exec-touch"]
RUN mkdir -p /heredoc && echo one > /heredoc/one && echo two > /heredoc/two
RUN echo piped > /heredoc/three
COPY heredoc-copied /heredoc/copied
""",
        files={"heredoc-copied": ("copied body\n", 0o644)},
        expect=dict.fromkeys(
            ["/heredoc/one", "/heredoc/three", "/heredoc/copied", "/run-exec-touch"]
        ),
    ),
    "copy_sources": Case(
        BASE
        + """\
RUN mkdir -p /dst/existing
COPY a.txt /dst/single-renamed
COPY a.txt /dst/into/
COPY a.txt /dst/existing
COPY a.txt b.txt /dst/several/
COPY *.txt /dst/glob/
COPY ["a.txt", "/dst/json form"]
COPY dir /dst/dircontents
COPY dir/ /dst/dirslash/
COPY dir /dst/nested/deep/
COPY d?r/sub /dst/qmark
COPY exec.sh private /dst/modes/
COPY . /dst/everything/
""",
        files=TREE,
        setup=_tree,
        expect=dict.fromkeys(
            [
                "/dst/single-renamed",
                "/dst/into/a.txt",
                "/dst/dircontents/sub/y",
                "/dst/existing/a.txt",
            ]
        ),
    ),
    "copy_chown_chmod": Case(
        BASE
        + PASSWD_APP
        + """\
RUN mkdir /own /mode
COPY --chown=app a.txt /own/name-only
COPY --chown=app:staff a.txt /own/name-name
COPY --chown=1234:5678 a.txt /own/numeric
COPY --chown=1234 dir /own/numeric-dir/
COPY --chown=app:staff dir /own/new/parents/
COPY --chmod=640 a.txt /mode/640
COPY --chmod=0755 a.txt /mode/0755
COPY --chmod=4755 exec.sh /mode/setuid
COPY --chmod=2750 exec.sh /mode/setgid
COPY --chmod=1777 dir /mode/sticky-dir/
COPY --chown=app:app --chmod=600 a.txt b.txt /mode/both/
""",
        files=TREE,
        setup=_tree,
        expect=dict.fromkeys(["/own/name-only", "/mode/setuid", "/mode/sticky-dir/sub/y"]),
    ),
    "multi_stage": Case(
        "FROM scratch AS base\nARG TARGETARCH\nADD rootfs-${TARGETARCH}.tar /\n"
        + """\
FROM base AS builder
RUN mkdir -p /out/bin /out/share && echo built > /out/bin/tool && chmod 755 /out/bin/tool \\
 && ln -s tool /out/bin/alias && echo doc > /out/share/doc && chmod 640 /out/share/doc
FROM base AS other
RUN echo other > /other.txt && chown 7:8 /other.txt

FROM base
COPY --from=builder /out/ /usr/local/
COPY --from=builder /out/bin/tool /opt/tool-copy
COPY --from=1 /out/share /share-by-index
COPY --from=other /other.txt /
COPY --from=builder --chown=1:1 /out/bin /opt/bin-owned
""",
        expect=dict.fromkeys(
            ["/usr/local/bin/tool", "/opt/tool-copy", "/share-by-index/doc", "/other.txt"]
        ),
    ),
    "add_archive": Case(
        BASE
        + """\
ADD archive.tar.gz /extracted/
ADD archive.tar.gz /extracted-again
ADD plain.txt /added/plain.txt
ADD --chown=5:5 plain.txt /added/owned
ADD --chmod=0600 plain.txt /added/private
""",
        setup=_archive,
        expect=dict.fromkeys(
            ["/extracted/top/file", "/extracted-again/top/hard", "/added/plain.txt"]
        ),
    ),
    "env_override_path": Case(
        BASE
        + """\
ENV A=first B=keep
ENV PATH=/opt/bin:$PATH
ENV A=second
ARG X=from-arg
ENV X=from-env
RUN echo "$A $B $X $PATH" > /env-seen
ARG X=arg-again
RUN echo "$X" > /arg-after-env
""",
        expect={
            "/env-seen": "second keep from-env"
            " /opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            # BuildKit's dispatchArg sets every ARG with a value into the build
            # state's env (d.state.AddEnv), in order: an ARG after an ENV of the
            # same name wins for the RUNs that follow (the config keeps the ENV).
            "/arg-after-env": "arg-again\n",
        },
        # buildah (imagebuilder) always lets ENV win over ARG, as the classic
        # builder did; BuildKit does not (see above, and kaniko's PR 624 which
        # changed kaniko to BuildKit's order).
        ignore_fields={"/arg-after-env": frozenset({"sha256", "size"})},
    ),
    "copy_paths_and_links": Case(
        """\
FROM scratch AS files
COPY . /
FROM scratch
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
RUN mkdir -p /target /app && ln -s /target /linkdir && echo old > /target/replaced \\
 && echo 'app:x:1000:1000::/:/bin/sh' >> /etc/passwd
COPY a.txt /linkdir/
COPY b.txt /linkdir/replaced
WORKDIR /app
COPY a.txt .
COPY a.txt b.txt rel/
COPY dir sub/dir
USER app
COPY c.md /app/copied-as-user
COPY --from=files /dir/sub/y /dir/x* /from-files/
COPY --from=files /links/rel /from-files/followed
""",
        files={**TREE, "links/.keep": ""},
        setup=_tree_and_link,
        expect={
            "/target/a.txt": "alpha\n",
            "/target/replaced": "bravo\n",
            "/app/rel/b.txt": None,
            "/from-files/y": None,
            "/from-files/followed": "alpha\n",
        },
    ),
    "add_formats": Case(
        BASE
        + """\
RUN mkdir -p /into/pkg && echo kept > /into/pkg/kept
ADD plain.tar /into/
ADD packed.tar.xz /xz/
ADD packed.tar.bz2 /bz2
ADD fake.tar.gz /fake/
""",
        setup=_archives,
        expect={
            "/into/pkg/kept": "kept\n",
            "/into/pkg/README": "readme\n",
            "/xz/pkg/bin/run": None,
            "/bz2/pkg/README": None,
            "/fake/fake.tar.gz": "not an archive\n",
        },
    ),
    "whiteouts_opaque": Case(
        BASE
        + """\
RUN mkdir -p /victim/sub /opaque/keep && echo 1 > /victim/f && echo 2 > /victim/sub/g \\
 && echo 3 > /opaque/old && echo 4 > /opaque/keep/k && echo 5 > /file-to-delete
RUN rm -rf /victim/sub /file-to-delete /bin/yes /etc/group
RUN rm -rf /opaque && mkdir -p /opaque/keep && echo new > /opaque/new
RUN rm /victim/f && rmdir /victim && rm /bin/ls && mkdir /bin/ls && rm -r /root
""",
        expect=dict.fromkeys(["/opaque/new", "/opaque/keep", "/bin/ls"]),
    ),
    "links_modes_empty_dirs": Case(
        BASE
        + """\
RUN mkdir -p /m && cd /m && echo data > file && ln file hard1 && ln file hard2 \\
 && ln -s file rel-link && ln -s /m/file abs-link && ln -s missing dangling \\
 && touch suid sgid && chmod 4755 suid && chmod 2755 sgid && chmod 6711 hard2 \\
 && mkdir sticky && chmod 1777 sticky && touch private && chmod 600 private \\
 && mkdir -p empty/nested-empty && chmod 700 empty && chown 1000:1000 private \\
 && chown -h 1000:1000 rel-link && chown 2:3 sticky
COPY links/ /ctx-links/
COPY emptydir /ctx-empty
""",
        setup=_links,
        expect=dict.fromkeys(
            ["/m/hard1", "/m/suid", "/m/empty/nested-empty", "/ctx-links/rel", "/ctx-empty"]
        ),
    ),
}


# ------------------------------------------------------------ the comparison


def write_case(ctx: Path, case: Case) -> None:
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(case.dockerfile)
    if case.buildah_dockerfile is not None:
        (ctx / "Dockerfile.buildah").write_text(case.buildah_dockerfile)
    for name, spec in case.files.items():
        text, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    if case.setup is not None:
        case.setup(ctx)
    add_rootfs_tarballs(ctx, ("amd64",))
    # .dockerignore keeps buildah's Dockerfile out of `COPY . dst`, for both.
    (ctx / ".dockerignore").write_text("Dockerfile.buildah\n")


def build_with_buildah(buildah: Buildah, ctx: Path, case: Case, name: str, out: Path) -> Path:
    dockerfile = ctx / ("Dockerfile.buildah" if case.buildah_dockerfile else "Dockerfile")
    build_args = [f"--build-arg={k}={v}" for k, v in case.build_args.items()]
    buildah(
        "bud", "--isolation", "chroot", "--format", "docker", "--layers=false",
        "--platform", "linux/amd64", *build_args,
        "-t", f"localhost/cmp:{name}", "-f", dockerfile, ctx,
    )  # fmt: skip
    buildah("push", f"localhost/cmp:{name}", f"oci:{out}")
    return out


def compare(name: str, case: Case, farm: FarmBuilder, buildah: Buildah, tmp: Path) -> list[str]:
    ctx = tmp / "context"
    write_case(ctx, case)
    archive = farm.build_oci(ctx, tmp / "farm.tar", build_args=case.build_args)
    farm_image = load_image(unpack_archive(archive, tmp / "farm-layout"), "amd64")
    other_image = load_image(build_with_buildah(buildah, ctx, case, name, tmp / "buildah-layout"))
    farm_root = flatten(farm_image, tmp / "farm-root")
    other_root = flatten(other_image, tmp / "buildah-root")
    farm_files, other_files = snapshot(farm_root), snapshot(other_root)

    for path, text in case.expect.items():
        assert path in farm_files, f"{name}: Farm's image lacks {path}"
        if text is not None:
            assert (farm_root / path.lstrip("/")).read_text() == text, path

    stubs = {
        path
        for path in MOUNTPOINT_STUBS
        if path in other_files
        and path not in farm_files
        and is_empty_stub(other_files[path], other_root, path)
    }
    lines = diff_snapshots(
        farm_files,
        other_files,
        ignore_paths=stubs | case.ignore_paths,
        ignore_fields={k: set(v) for k, v in case.ignore_fields.items()},
    )
    farm_config = config_fields(farm_image.config)
    other_config = config_fields(other_image.config)
    other_config["Labels"] = {
        k: v for k, v in (other_config["Labels"] or {}).items() if k not in BUILDAH_LABELS
    } or None
    for key, want in case.expect_config.items():
        assert farm_config[key] == want, f"{name}: config.{key}"
    for key in case.ignore_config:
        farm_config[key] = other_config[key] = "(ignored)"
    lines += diff_configs(farm_config, other_config)
    return lines


@pytest.mark.interop
@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(CASES))
def test_farm_matches_buildah(
    name: str, farm: FarmBuilder, buildah: Buildah, tmp_path: Path
) -> None:
    lines = compare(name, CASES[name], farm, buildah, tmp_path)
    assert not lines, f"{name}: Farm's image differs from buildah's:\n" + "\n".join(lines)


# ------------------------------------------------------------ the comparison can fail


def test_diff_snapshots_reports_each_difference() -> None:
    farm = {
        "/a": {"type": "file", "mode": "0o644", "uid": 0, "gid": 0, "sha256": "1", "size": 1},
        "/b": {"type": "dir", "mode": "0o755", "uid": 0, "gid": 0},
        "/l": {"type": "symlink", "uid": 0, "gid": 0, "target": "a"},
    }
    other = {
        "/a": {"type": "file", "mode": "0o4644", "uid": 0, "gid": 1, "sha256": "1", "size": 1},
        "/l": {"type": "symlink", "uid": 0, "gid": 0, "target": "b"},
        "/c": {"type": "dir", "mode": "0o755", "uid": 0, "gid": 0},
    }
    assert diff_snapshots(farm, other) == [
        "/a: gid farm=0 buildah=1",
        "/a: mode farm='0o644' buildah='0o4644'",
        "/b: only in farm {'type': 'dir', 'mode': '0o755', 'uid': 0, 'gid': 0}",
        "/c: only in buildah {'type': 'dir', 'mode': '0o755', 'uid': 0, 'gid': 0}",
        "/l: target farm='a' buildah='b'",
    ]
    assert diff_snapshots(
        farm, other, ignore_paths={"/b", "/c"}, ignore_fields={"/a": {"gid"}}
    ) == [
        "/a: mode farm='0o644' buildah='0o4644'",
        "/l: target farm='a' buildah='b'",
    ]


def test_diff_configs_treats_only_empty_spellings_as_equal() -> None:
    farm = config_fields({"config": {"Cmd": [], "Env": ["A=1"], "User": "app"}})
    other = config_fields({"config": {"Env": ["A=1"], "User": "1000", "Labels": {}}})
    assert diff_configs(farm, other) == ["config.User: farm='app' buildah='1000'"]
