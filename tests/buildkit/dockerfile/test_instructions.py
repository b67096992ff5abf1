"""Typed instructions: arguments, flags, mounts, stages and the errors, as
BuildKit parses them (expected values written from the Dockerfile reference)."""

from __future__ import annotations

import contextlib
import random

import pytest

from buildkit.dockerfile import parse_dockerfile
from buildkit.dockerfile.instructions import (
    Add,
    Arg,
    ArgDecl,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Mount,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    parse_instructions,
)
from buildkit.dockerfile.syntax import Heredoc, parse
from buildkit.errors import DockerfileError


def one(line: str, syntax: str = "") -> Instruction:
    """The single instruction of `line`, in a stage."""
    head = f"# syntax={syntax}\n" if syntax else ""
    (stage,) = parse_dockerfile(f"{head}FROM base\n{line}\n").stages
    (instruction,) = stage.instructions
    return instruction


def error(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(text, "ctx/Dockerfile")
    assert info.value.path == "ctx/Dockerfile"
    return info.value


def line_error(line: str, syntax: str = "") -> DockerfileError:
    """The error of `line`, which is on line 2 (3 with a syntax directive)."""
    head = f"# syntax={syntax}\n" if syntax else ""
    exc = error(f"{head}FROM base\n{line}\n")
    assert exc.line == (3 if syntax else 2)
    return exc


def kv(**pairs: str) -> tuple[KeyValue, ...]:
    return tuple(KeyValue(key=k, value=v) for k, v in pairs.items())


# ---------------------------------------------------------------- FROM


@pytest.mark.parametrize(
    ("line", "image", "name", "platform"),
    [
        ("FROM alpine", "alpine", "", ""),
        ("FROM alpine:3.20 AS build", "alpine:3.20", "build", ""),
        ("FROM alpine as Build", "alpine", "Build", ""),
        ("from golang:${GO} aS b-1_x.y", "golang:${GO}", "b-1_x.y", ""),
        ("FROM --platform=$BUILDPLATFORM golang AS b", "golang", "b", "$BUILDPLATFORM"),
        ("FROM --platform=linux/arm64 scratch", "scratch", "", "linux/arm64"),
    ],
)
def test_from(line: str, image: str, name: str, platform: str) -> None:
    (stage,) = parse_dockerfile(line).stages
    assert (stage.from_.image, stage.from_.name, stage.from_.platform) == (image, name, platform)
    assert stage.name == name
    assert stage.from_.keyword == "FROM"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("FROM", "FROM requires either one or three arguments"),
        ("FROM a b", "FROM requires either one or three arguments"),
        ("FROM a AS", "FROM requires either one or three arguments"),
        ("FROM a FOR b", "FROM requires either one or three arguments"),
        ("FROM a AS b c", "FROM requires either one or three arguments"),
        ("FROM a AS 1st", "invalid name for build stage: '1st'"),
        ("FROM a AS b$c", "invalid name for build stage"),
        ("FROM --platform a", "missing a value on flag: --platform"),
        ("FROM --plat=x a", "unknown flag: --plat"),
    ],
)
def test_from_errors(line: str, fragment: str) -> None:
    exc = error(line)
    assert (exc.line, exc.instruction) == (1, "FROM")
    assert fragment in exc.message


# ---------------------------------------------------------------- ENV, LABEL, ARG


@pytest.mark.parametrize(
    ("line", "pairs", "legacy"),
    [
        ("ENV A=1", kv(A="1"), False),
        ("ENV A=1 B=2", kv(A="1", B="2"), False),
        # quotes and escapes stay for the expander
        ("ENV A=\"a b\" B='c d'", kv(A='"a b"', B="'c d'"), False),
        ("ENV A=a\\ b C=$D", kv(A="a\\ b", C="$D"), False),
        ("ENV A= B=x", kv(A="", B="x"), False),
        ("ENV A=x=y", kv(A="x=y"), False),
        # legacy form: the first word, then everything after it
        ("ENV A some value", kv(A="some value"), True),
        ('ENV A "quoted value"', kv(A='"quoted value"'), True),
    ],
)
def test_env(line: str, pairs: tuple[KeyValue, ...], legacy: bool) -> None:
    inst = one(line)
    assert isinstance(inst, Env)
    assert (inst.pairs, inst.legacy) == (pairs, legacy)


@pytest.mark.parametrize(
    ("line", "pairs", "legacy"),
    [
        (
            'LABEL a=b "c d"="e f"',
            (KeyValue(key="a", value="b"), KeyValue(key='"c d"', value='"e f"')),
            False,
        ),
        ("LABEL version 1.0", kv(version="1.0"), True),
        ("LABEL multi=a \\\n  other=b", kv(multi="a", other="b"), False),
    ],
)
def test_label(line: str, pairs: tuple[KeyValue, ...], legacy: bool) -> None:
    inst = one(line)
    assert isinstance(inst, Label)
    assert (inst.pairs, inst.legacy) == (pairs, legacy)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("ENV", "ENV requires at least one argument"),
        ("ENV A", "ENV must have two arguments"),
        ("ENV A=1 B", "can't find = in 'B'"),
        ("ENV =x", "ENV names can not be blank"),
        ("LABEL", "LABEL requires at least one argument"),
        ("LABEL a", "LABEL must have two arguments"),
        ("LABEL a=1 b", "can't find = in 'b'"),
        ("ENV --x=1 A=1", "unknown flag: --x (ENV takes no flags)"),
        ("ARG", "ARG requires at least one argument"),
        ("ARG =x", "ARG names can not be blank"),
    ],
)
def test_key_value_errors(line: str, fragment: str) -> None:
    exc = line_error(line)
    assert exc.instruction == line.split()[0]
    assert fragment in exc.message


@pytest.mark.parametrize(
    ("line", "decls"),
    [
        ("ARG A", (ArgDecl(name="A"),)),
        ("ARG A=1", (ArgDecl(name="A", default="1"),)),
        ("ARG A=", (ArgDecl(name="A", default=""),)),
        ("ARG A B=2 C", (ArgDecl(name="A"), ArgDecl(name="B", default="2"), ArgDecl(name="C"))),
        ('ARG A="x y"', (ArgDecl(name="A", default='"x y"'),)),
        ("ARG A=${B:-c}", (ArgDecl(name="A", default="${B:-c}"),)),
    ],
)
def test_arg(line: str, decls: tuple[ArgDecl, ...]) -> None:
    inst = one(line)
    assert isinstance(inst, Arg)
    assert inst.args == decls


# ---------------------------------------------------------------- RUN


@pytest.mark.parametrize(
    ("line", "command", "shell"),
    [
        ("RUN echo hi", ("echo hi",), True),
        ('RUN ["echo", "hi there"]', ("echo", "hi there"), False),
        ("RUN [ -f x ] || exit 1", ("[ -f x ] || exit 1",), True),
        ("RUN a && \\\n    b", ("a &&     b",), True),
    ],
)
def test_run_forms(line: str, command: tuple[str, ...], shell: bool) -> None:
    inst = one(line)
    assert isinstance(inst, Run)
    assert (inst.command, inst.shell, inst.mounts, inst.network, inst.security) == (
        command,
        shell,
        (),
        "",
        "",
    )


def test_run_heredoc() -> None:
    inst = one("RUN <<EOF bash\nset -e\necho $A\nEOF")
    assert isinstance(inst, Run)
    assert (inst.command, inst.shell) == (("<<EOF bash",), True)
    assert inst.heredocs == (Heredoc(name="EOF", content="set -e\necho $A\n"),)
    assert (inst.line, inst.end_line) == (2, 5)


@pytest.mark.parametrize(
    ("spec", "mount_type", "options"),
    [
        ("target=/src", "bind", kv(target="/src")),
        (
            "type=bind,source=app,target=/app,from=build,rw",
            "bind",
            kv(source="app", target="/app", **{"from": "build"}, readwrite="true"),
        ),
        ("type=bind,src=a,dst=/b,ro", "bind", kv(source="a", target="/b", readonly="true")),
        ("type=bind,destination=/b,readonly=false", "bind", kv(target="/b", readonly="false")),
        (
            "type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000,gid=1000",
            "cache",
            kv(
                target="/root/.cache",
                id="pip",
                sharing="locked",
                mode="0755",
                uid="1000",
                gid="1000",
            ),
        ),
        (
            "type=cache,target=/c,from=build,source=/x,readonly",
            "cache",
            kv(target="/c", **{"from": "build"}, source="/x", readonly="true"),
        ),
        ("TYPE=CACHE,Target=/c,sharing=Private", "cache", kv(target="/c", sharing="Private")),
        ("type=tmpfs,target=/tmp,size=64m", "tmpfs", kv(target="/tmp", size="64m")),
        ("type=tmpfs,target=/tmp,size=1.5GiB", "tmpfs", kv(target="/tmp", size="1.5GiB")),
        ("type=secret,id=npmrc", "secret", kv(id="npmrc")),
        (
            "type=secret,id=tok,env=TOKEN,required=true,mode=0400,uid=1,gid=2",
            "secret",
            kv(id="tok", env="TOKEN", required="true", mode="0400", uid="1", gid="2"),
        ),
        (
            "type=secret,target=/run/secrets/x,required",
            "secret",
            kv(target="/run/secrets/x", required="true"),
        ),
        ("type=ssh", "ssh", ()),
        (
            "type=ssh,id=github,target=/ssh,required=false",
            "ssh",
            kv(id="github", target="/ssh", required="false"),
        ),
        # CSV quoting, as Go's encoding/csv; the quotes must be escaped, since
        # unescaped ones are removed from flags before the CSV is read
        ('type=bind,\\"target=/a,b\\"', "bind", kv(target="/a,b")),
        ('\\"type=bind\\",\\"target=/\\"\\"hi\\"\\"\\"', "bind", kv(target='/"hi"')),
        # ... which makes unescaped quotes group words as usual
        ('type=bind,"target=/a b"', "bind", kv(target="/a b")),
        # values with variables are checked after expansion
        (
            "type=cache,target=$DIR,uid=$UID,sharing=${MODE}",
            "cache",
            kv(target="$DIR", uid="$UID", sharing="${MODE}"),
        ),
        # the last of a repeated key wins
        ("type=cache,target=/a,target=/b", "cache", kv(target="/b")),
    ],
)
def test_run_mounts(spec: str, mount_type: str, options: tuple[KeyValue, ...]) -> None:
    inst = one(f"RUN --mount={spec} true")
    assert isinstance(inst, Run)
    assert inst.mounts == (Mount(type=mount_type, options=options),)


def test_run_several_mounts_and_mount_get() -> None:
    inst = one("RUN --mount=type=cache,target=/a --mount=type=secret,id=s --network=none make")
    assert isinstance(inst, Run)
    assert [m.type for m in inst.mounts] == ["cache", "secret"]
    assert inst.mounts[0].get("target") == "/a"
    assert inst.mounts[0].get("id") is None
    assert inst.mounts[1].get("id") == "s"
    assert inst.network == "none"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("type=volume,target=/x", "unsupported mount type 'volume'"),
        ("type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'"),
        ("type=bind,target=/x,id=a", "unexpected key 'id' for mount type 'bind'"),
        ("type=bind,target=/x,mode=0755", "unexpected key 'mode' for mount type 'bind'"),
        ("type=tmpfs,target=/x,uid=0", "unexpected key 'uid' for mount type 'tmpfs'"),
        ("type=tmpfs,target=/x,from=a", "unexpected key 'from' for mount type 'tmpfs'"),
        ("type=secret,id=a,from=b", "unexpected key 'from' for mount type 'secret'"),
        ("type=secret,id=a,sharing=locked", "unexpected key 'sharing' for mount type 'secret'"),
        ("type=ssh,env=A", "unexpected key 'env' for mount type 'ssh'"),
        ("type=cache,target=/x,required", "unexpected key 'required' for mount type 'cache'"),
        ("type=cache,target=/x,foo=bar", "unexpected key 'foo' in 'foo=bar'"),
        ("type=cache,target=/x,nonsense", "invalid field 'nonsense' must be a key=value pair"),
        ("type=cache,target=/x,sharing=exclusive", "unsupported sharing value 'exclusive'"),
        ("type=cache,target=/x,mode=0789", "invalid value '0789' for mode"),
        ("type=cache,target=/x,mode=99999999999", "for mode"),
        ("type=cache,target=/x,uid=-1", "invalid value '-1' for uid"),
        ("type=cache,target=/x,gid=4294967296", "invalid value '4294967296' for gid"),
        ("type=bind,target=/x,ro=maybe", "invalid value for readonly: 'maybe'"),
        ("type=secret,id=a,required=yes", "invalid value for required: 'yes'"),
        ("type=tmpfs,target=/x,size=lots", "invalid value for size: 'lots'"),
        ("type=secret", "one of id, source or target is required"),
        ("type=secret,id=a,source=b", "both source and id can't be set"),
        ("type=bind,from=$STAGE-x,target=/x", "'from' doesn't support variable expansion"),
        ('type=bind,tar\\"get=/x', 'bare " in non-quoted-field'),
        ('type=bind,\\"target=/x', 'extraneous or missing " in quoted-field'),
        ('\\"type=bind\\"x,target=/x', 'extraneous or missing " in quoted-field'),
        ('"type=bind"x,target=/x', "unsupported mount type 'bindx'"),
        ("", "empty mount spec"),
        ("type", "invalid field 'type' must be a key=value pair"),
    ],
)
def test_run_mount_errors(spec: str, fragment: str) -> None:
    exc = line_error(f"RUN --mount={spec} true")
    assert exc.instruction == "RUN"
    assert "invalid --mount=" in exc.message
    assert fragment in exc.message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("RUN", "RUN requires at least one argument"),
        ("RUN []", "RUN requires at least one argument"),
        ("RUN --network=bridge x", "unsupported network mode 'bridge'"),
        ("RUN --security=privileged x", "unsupported security mode 'privileged'"),
        ("RUN --mount x", "missing a value on flag: --mount"),
        ("RUN --network=none --network=host x", "duplicate flag specified: --network"),
        (
            "RUN --nettwork=none x",
            "unknown flag: --nettwork (RUN accepts --mount, --network, --security)",
        ),
        ("RUN --device=/dev/fuse x", "unknown flag: --device"),
    ],
)
def test_run_errors(line: str, fragment: str) -> None:
    exc = line_error(line)
    assert exc.instruction == "RUN"
    assert fragment in exc.message


@pytest.mark.parametrize("mode", ["default", "none", "host"])
def test_run_network(mode: str) -> None:
    inst = one(f"RUN --network={mode} x")
    assert isinstance(inst, Run) and inst.network == mode


@pytest.mark.parametrize("mode", ["sandbox", "insecure"])
def test_run_security(mode: str) -> None:
    inst = one(f"RUN --security={mode} x")
    assert isinstance(inst, Run) and inst.security == mode


# ---------------------------------------------------------------- labs and syntax


@pytest.mark.parametrize(
    ("syntax", "line"),
    [
        # stable today
        ("docker/dockerfile:1", "RUN --security=insecure x"),
        ("docker/dockerfile:1", "COPY --parents --exclude=*.md a /b"),
        ("", "COPY --parents a /b"),
        # stable since a release
        ("docker/dockerfile:1.20", "RUN --security=insecure x"),
        ("docker/dockerfile:1.19.0", "COPY --exclude=x a /b"),
        ("docker/dockerfile:1.6", "ADD --checksum=sha256:0 https://x/a /b"),
        ("docker/dockerfile:1.4", "COPY --link a /b"),
        ("docker/dockerfile:1.17", "ADD --unpack=true a /b"),
        # labs before that
        ("docker/dockerfile:1.7-labs", "COPY --parents --exclude=x a /b"),
        ("docker/dockerfile:1-labs", "RUN --security=insecure x"),
        ("docker/dockerfile:1.4-labs", "RUN --security=insecure x"),
        ("docker/dockerfile:labs", "COPY --parents a /b"),
        ("docker/dockerfile:1.0-experimental", "RUN --mount=type=cache,target=/x x"),
        ("docker/dockerfile:1.2", "RUN --mount=type=cache,target=/x x"),
    ],
)
def test_flags_available_in_the_syntax(syntax: str, line: str) -> None:
    assert one(line, syntax).line == (3 if syntax else 2)


@pytest.mark.parametrize(
    ("syntax", "line", "flag", "hint"),
    [
        (
            "docker/dockerfile:1.19",
            "RUN --security=insecure x",
            "--security",
            "docker/dockerfile:1.20 or later",
        ),
        ("docker/dockerfile:1.7", "COPY --parents a /b", "--parents", "docker/dockerfile:1-labs"),
        (
            "docker/dockerfile:1.18.1",
            "COPY --exclude=x a /b",
            "--exclude",
            "docker/dockerfile:1-labs",
        ),
        (
            "docker/dockerfile:1.18",
            "ADD --exclude=x a /b",
            "--exclude",
            "docker/dockerfile:1.19 or later",
        ),
        (
            "docker/dockerfile:1.6-labs",
            "COPY --parents a /b",
            "--parents",
            "docker/dockerfile:1-labs",
        ),
        (
            "docker/dockerfile:1.5",
            "ADD --keep-git-dir https://g/r.git /b",
            "--keep-git-dir",
            "1-labs",
        ),
        ("docker/dockerfile:1.3", "COPY --link a /b", "--link", "docker/dockerfile:1.4 or later"),
        (
            "docker/dockerfile:1.16",
            "ADD --unpack a /b",
            "--unpack",
            "docker/dockerfile:1.17 or later",
        ),
        (
            "docker/dockerfile:1.1",
            "RUN --mount=target=/x x",
            "--mount",
            "docker/dockerfile:1.2 or later",
        ),
        (
            "docker/dockerfile:1.5",
            "HEALTHCHECK --start-interval=1s CMD x",
            "--start-interval",
            "1.6 or later",
        ),
    ],
)
def test_flags_needing_labs_or_a_later_syntax(syntax: str, line: str, flag: str, hint: str) -> None:
    exc = line_error(line, syntax)
    assert exc.instruction == line.split()[0]
    assert f"the {flag} flag is not available in" in exc.message
    assert hint in exc.message


@pytest.mark.parametrize(
    "syntax",
    [
        "docker/dockerfile:1",
        "docker/dockerfile:1.7",
        "docker/dockerfile:1.7.1",
        "docker/dockerfile:1-labs",
        "docker/dockerfile:1.7-labs",
        "docker/dockerfile:1.7.0-labs",
        "docker/dockerfile:1.27.0-rc1",
        "docker/dockerfile",
        "docker/dockerfile:latest",
        "docker.io/docker/dockerfile:1",
        "docker.io/docker/dockerfile-upstream:1.20.0",
        "docker/dockerfile:1@sha256:" + "a" * 64,
        "docker.io/docker/dockerfile:1.7-labs@sha256:" + "0" * 64,
    ],
)
def test_supported_syntax(syntax: str) -> None:
    df = parse_dockerfile(f"# syntax={syntax}\nFROM a\n")
    assert df.directives.syntax == syntax


@pytest.mark.parametrize(
    "syntax",
    [
        "docker/dockerfile:2",
        "docker/dockerfile:0.9",
        "docker/dockerfile:1.x",
        "docker/dockerfile:1-foo",
        "tonistiigi/x",
        "myorg/frontend:1",
        "ghcr.io/docker/dockerfile:1",
        "docker/dockerfile:1@sha256:abc",
        "docker/dockerfile:1 extra",
    ],
)
def test_unsupported_syntax(syntax: str) -> None:
    exc = error(f"# escape=\\\n# syntax={syntax}\nFROM a\n")
    assert exc.line == 2
    assert f"unsupported syntax frontend {syntax!r}" in exc.message
    assert "docker/dockerfile:1" in exc.message


# ---------------------------------------------------------------- CMD, ENTRYPOINT, SHELL


@pytest.mark.parametrize(
    ("line", "kind", "command", "shell"),
    [
        ('CMD ["nginx", "-g", "daemon off;"]', Cmd, ("nginx", "-g", "daemon off;"), False),
        ("CMD nginx -g 'daemon off;'", Cmd, ("nginx -g 'daemon off;'",), True),
        ("CMD []", Cmd, (), False),
        ('ENTRYPOINT ["/entry.sh"]', Entrypoint, ("/entry.sh",), False),
        ("ENTRYPOINT exec app", Entrypoint, ("exec app",), True),
        ("ENTRYPOINT []", Entrypoint, (), False),
    ],
)
def test_cmd_entrypoint(line: str, kind: type, command: tuple[str, ...], shell: bool) -> None:
    inst = one(line)
    assert isinstance(inst, kind)
    assert (inst.command, inst.shell) == (command, shell)  # type: ignore[attr-defined]


def test_shell() -> None:
    inst = one('SHELL ["powershell", "-command"]')
    assert isinstance(inst, Shell)
    assert inst.shell == ("powershell", "-command")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("CMD", "CMD requires at least one argument"),
        ("ENTRYPOINT", "ENTRYPOINT requires at least one argument"),
        ("CMD --x a", "unknown flag: --x (CMD takes no flags)"),
        ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),
        ('SHELL ["/bin/sh", "-c"', "SHELL requires the arguments to be in JSON form"),
        ("SHELL ['/bin/sh']", "SHELL requires the arguments to be in JSON form"),
        ("SHELL []", "SHELL requires at least one argument"),
        ("SHELL", "SHELL requires the arguments to be in JSON form"),
    ],
)
def test_command_errors(line: str, fragment: str) -> None:
    exc = line_error(line)
    assert exc.instruction == line.split()[0]
    assert fragment in exc.message


# ---------------------------------------------------------------- HEALTHCHECK


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("HEALTHCHECK NONE", {"test": ("NONE",)}),
        ("HEALTHCHECK none", {"test": ("NONE",)}),
        (
            'HEALTHCHECK CMD ["curl", "-f", "http://x/"]',
            {"test": ("CMD", "curl", "-f", "http://x/")},
        ),
        (
            "HEALTHCHECK CMD curl -f http://x/ || exit 1",
            {"test": ("CMD-SHELL", "curl -f http://x/ || exit 1")},
        ),
        ("HEALTHCHECK cmd true", {"test": ("CMD-SHELL", "true")}),
        (
            "HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms "
            "--retries=3 CMD true",
            {
                "test": ("CMD-SHELL", "true"),
                "interval": "5m",
                "timeout": "3s",
                "start_period": "1m30s",
                "start_interval": "500ms",
                "retries": "3",
            },
        ),
        (
            "HEALTHCHECK --interval=0 --timeout=1ms --retries=0 CMD true",
            {"test": ("CMD-SHELL", "true"), "interval": "0", "timeout": "1ms", "retries": "0"},
        ),
        (
            "HEALTHCHECK --interval=1.5h --timeout=.5s CMD true",
            {"test": ("CMD-SHELL", "true"), "interval": "1.5h", "timeout": ".5s"},
        ),
        # flags are not looked at for NONE, as in BuildKit
        ("HEALTHCHECK --interval=5s NONE", {"test": ("NONE",)}),
    ],
)
def test_healthcheck(line: str, want: dict[str, object]) -> None:
    inst = one(line)
    assert isinstance(inst, Healthcheck)
    full = {"interval": "", "timeout": "", "start_period": "", "start_interval": "", "retries": ""}
    full.update(want)  # type: ignore[arg-type]
    got = {name: getattr(inst, name) for name in full}
    assert got == full


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE now", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CMD []", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK RUN true", "Unknown type 'RUN' in HEALTHCHECK"),
        ("HEALTHCHECK --interval=5 CMD true", "invalid --interval '5'"),
        ("HEALTHCHECK --timeout=abc CMD true", "invalid --timeout 'abc'"),
        ("HEALTHCHECK --timeout=1d CMD true", "invalid --timeout '1d'"),
        ("HEALTHCHECK --start-period=.s CMD true", "invalid --start-period '.s'"),
        ("HEALTHCHECK --interval=999999999999h CMD true", "invalid --interval"),
        ("HEALTHCHECK --interval=500us CMD true", "--interval cannot be less than 1ms"),
        ("HEALTHCHECK --timeout=-1s CMD true", "--timeout cannot be less than 1ms"),
        ("HEALTHCHECK --start-interval=0.1ms CMD true", "--start-interval cannot be less than 1ms"),
        ("HEALTHCHECK --retries=-1 CMD true", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retries=three CMD true", "--retries must be a whole number"),
        ("HEALTHCHECK --retries=99999999999 CMD true", "--retries must be a whole number"),
        ("HEALTHCHECK --interval CMD true", "missing a value on flag: --interval"),
        ("HEALTHCHECK --every=1s CMD true", "unknown flag: --every"),
    ],
)
def test_healthcheck_errors(line: str, fragment: str) -> None:
    exc = line_error(line)
    assert exc.instruction == "HEALTHCHECK"
    assert fragment in exc.message


# ---------------------------------------------------------------- COPY, ADD


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("COPY a /b", {"sources": ("a",), "dest": "/b"}),
        ("COPY a b c /d/", {"sources": ("a", "b", "c"), "dest": "/d/"}),
        (
            'COPY ["my file", "other file", "/dest dir/"]',
            {"sources": ("my file", "other file"), "dest": "/dest dir/"},
        ),
        (
            "COPY --from=build --chown=app:app --chmod=0755 --link --parents "
            "--exclude=*.md --exclude=test/ ./src/ /app/",
            {
                "sources": ("./src/",),
                "dest": "/app/",
                "from_": "build",
                "chown": "app:app",
                "chmod": "0755",
                "link": True,
                "parents": True,
                "excludes": ("*.md", "test/"),
            },
        ),
        (
            "COPY --link=false --parents=true a /b",
            {"sources": ("a",), "dest": "/b", "parents": True},
        ),
        (
            "COPY --from=${STAGE} $SRC $DST",
            {"sources": ("$SRC",), "dest": "$DST", "from_": "${STAGE}"},
        ),
        (
            "COPY <<EOF /etc/motd\nhello\nEOF",
            {
                "sources": (),
                "dest": "/etc/motd",
                "heredocs": (Heredoc(name="EOF", content="hello\n"),),
            },
        ),
        (
            "COPY a <<one <<-two /dst/\n1\none\n\t2\n\ttwo",
            {
                "sources": ("a",),
                "dest": "/dst/",
                "heredocs": (
                    Heredoc(name="one", content="1\n"),
                    Heredoc(name="two", content="2\n", chomp=True),
                ),
            },
        ),
        # in the JSON form "<<EOF" is a file name
        ('COPY ["<<EOF", "/x"]', {"sources": ("<<EOF",), "dest": "/x"}),
    ],
)
def test_copy(line: str, want: dict[str, object]) -> None:
    inst = one(line)
    assert isinstance(inst, Copy)
    full: dict[str, object] = {
        "heredocs": (),
        "from_": "",
        "chown": "",
        "chmod": "",
        "link": False,
        "parents": False,
        "excludes": (),
    }
    full.update(want)
    assert {name: getattr(inst, name) for name in full} == full


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("ADD https://x/a.tgz /opt/", {"sources": ("https://x/a.tgz",), "dest": "/opt/"}),
        (
            "ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d "
            "--chown=1:1 --chmod=644 --link https://x/a /a",
            {
                "sources": ("https://x/a",),
                "dest": "/a",
                "checksum": "sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d",
                "chown": "1:1",
                "chmod": "644",
                "link": True,
            },
        ),
        (
            "ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.10.1 /buildkit",
            {
                "sources": ("https://github.com/moby/buildkit.git#v0.10.1",),
                "dest": "/buildkit",
                "keep_git_dir": True,
            },
        ),
        ("ADD --unpack a.tar.gz /x/", {"sources": ("a.tar.gz",), "dest": "/x/", "unpack": True}),
        (
            "ADD --unpack=false a.tar.gz /x/",
            {"sources": ("a.tar.gz",), "dest": "/x/", "unpack": False},
        ),
        (
            "ADD --exclude=*.txt dir /x/",
            {"sources": ("dir",), "dest": "/x/", "excludes": ("*.txt",)},
        ),
        (
            "ADD <<EOF /x\ny\nEOF",
            {"sources": (), "dest": "/x", "heredocs": (Heredoc(name="EOF", content="y\n"),)},
        ),
    ],
)
def test_add(line: str, want: dict[str, object]) -> None:
    inst = one(line)
    assert isinstance(inst, Add)
    full: dict[str, object] = {
        "heredocs": (),
        "chown": "",
        "chmod": "",
        "link": False,
        "excludes": (),
        "checksum": "",
        "keep_git_dir": False,
        "unpack": None,
    }
    full.update(want)
    assert {name: getattr(inst, name) for name in full} == full


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("COPY", "COPY requires at least two arguments, but only 0 was provided"),
        ("COPY a", "COPY requires at least two arguments, but only 1 was provided"),
        ('COPY ["a"]', "Destination could not be determined"),
        ("ADD a", "ADD requires at least two arguments"),
        ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
        ("COPY --checksum=sha256:0 a /b", "unknown flag: --checksum"),
        ("ADD --from=build a /b", "unknown flag: --from"),
        ("ADD --parents a /b", "unknown flag: --parents"),
        ("COPY --link=maybe a /b", "expecting boolean value for flag --link, not: maybe"),
        ("COPY --link= a /b", "missing a value on flag: --link"),
        ("COPY --from a /b", "missing a value on flag: --from"),
        ("COPY --from=a --from=b c /d", "duplicate flag specified: --from"),
        ("COPY --chown=a --chown=b c /d", "duplicate flag specified: --chown"),
    ],
)
def test_copy_add_errors(line: str, fragment: str) -> None:
    exc = line_error(line)
    assert exc.instruction == line.split()[0]
    assert fragment in exc.message


# ---------------------------------------------------------------- the simple ones


@pytest.mark.parametrize(
    ("line", "kind", "field", "value"),
    [
        ("EXPOSE 80", Expose, "ports", ("80",)),
        ("EXPOSE 80/tcp 53/udp ${PORT}", Expose, "ports", ("80/tcp", "53/udp", "${PORT}")),
        ('VOLUME ["/data", "/var/log app"]', Volume, "paths", ("/data", "/var/log app")),
        ("VOLUME /data /logs", Volume, "paths", ("/data", "/logs")),
        ("USER app", User, "user", "app"),
        ("USER 1000:1000", User, "user", "1000:1000"),
        ("WORKDIR /path with spaces", Workdir, "path", "/path with spaces"),
        ("WORKDIR $HOME/app", Workdir, "path", "$HOME/app"),
        ("STOPSIGNAL SIGKILL", StopSignal, "signal", "SIGKILL"),
        ("STOPSIGNAL 9", StopSignal, "signal", "9"),
        (
            "MAINTAINER Jane Doe <jane@example.com>",
            Maintainer,
            "name",
            "Jane Doe <jane@example.com>",
        ),
        ("ONBUILD RUN make", Onbuild, "expression", "RUN make"),
        ("onbuild   COPY --from=x a /b", Onbuild, "expression", "COPY --from=x a /b"),
        ("ONBUILD ADD <<EOF /x\nhi\nEOF", Onbuild, "expression", "ADD <<EOF /x\nhi\nEOF"),
    ],
)
def test_simple_instructions(line: str, kind: type, field: str, value: object) -> None:
    inst = one(line)
    assert isinstance(inst, kind)
    assert getattr(inst, field) == value


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ("VOLUME []", "VOLUME requires at least one argument"),
        ('VOLUME ["/a", " "]', "VOLUME specified can not be an empty string"),
        ("USER", "USER requires exactly one argument"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("MAINTAINER", "MAINTAINER requires exactly one argument"),
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM alpine", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD --x RUN y", "unknown flag: --x"),
        ("WORKDIR --x /a", "unknown flag: --x (WORKDIR takes no flags)"),
        ("EXPOSE --udp 53", "unknown flag: --udp"),
    ],
)
def test_simple_errors(line: str, fragment: str) -> None:
    exc = line_error(line)
    assert exc.instruction == line.split()[0].upper()
    assert fragment in exc.message


@pytest.mark.parametrize(
    ("word", "fragment"),
    [
        ("FORM", "unknown instruction: FORM (did you mean FROM?)"),
        ("RUNN", "unknown instruction: RUNN (did you mean RUN?)"),
        ("copyy", "unknown instruction: COPYY (did you mean COPY?)"),
        ("XYZZY", "unknown instruction: XYZZY"),
    ],
)
def test_unknown_instruction(word: str, fragment: str) -> None:
    exc = line_error(f"{word} something")
    assert exc.instruction == word.upper()
    assert fragment in exc.message
    assert str(exc).startswith(f"ctx/Dockerfile:2: {word.upper()}: ")


# ---------------------------------------------------------------- stages


def test_stages_and_global_args() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "# GO the toolchain version\n"
        "ARG GO=1.22\n"
        "ARG BASE\n"
        "# build compiles the app\n"
        "FROM golang:${GO} AS build\n"
        "ARG GO\n"
        "RUN go build\n"
        "\n"
        "FROM ${BASE}\n"
        "COPY --from=build /out /\n"
    )
    df = parse_dockerfile(text, "x/Dockerfile")
    assert df.path == "x/Dockerfile"
    assert [a.args for a in df.global_args] == [
        (ArgDecl(name="GO", default="1.22"),),
        (ArgDecl(name="BASE"),),
    ]
    assert df.global_args[0].comment == "GO the toolchain version"
    assert [(s.index, s.name, s.from_.line) for s in df.stages] == [(0, "build", 6), (1, "", 10)]
    assert df.stages[0].from_.comment == "build compiles the app"
    assert [type(i).__name__ for i in df.stages[0].instructions] == ["Arg", "Run"]
    assert [type(i).__name__ for i in df.stages[1].instructions] == ["Copy"]
    assert [i.line for i in df.stages[0].instructions] == [7, 8]


def test_parse_instructions_takes_the_syntax_step() -> None:
    parsed = parse("FROM a\nRUN b \\\n\n c\n", "p")
    df = parse_instructions(parsed)
    assert df.directives == parsed.directives
    assert df.warnings == parsed.warnings == ((3, "Empty continuation line found in: RUN b  c"),)


@pytest.mark.parametrize(
    ("text", "line", "instruction", "fragment"),
    [
        ("RUN x\nFROM a\n", 1, "RUN", "only ARG may come before the first FROM"),
        ("ARG A\nENV B=1\nFROM a\n", 2, "ENV", "no build stage in current context"),
        ("ARG A\n", 0, "", "has no FROM instruction"),
        ("", 0, "", "has no instructions"),
        ("# only a comment\n\n", 0, "", "has no instructions"),
    ],
)
def test_stage_errors(text: str, line: int, instruction: str, fragment: str) -> None:
    exc = error(text)
    assert (exc.line, exc.instruction) == (line, instruction)
    assert fragment in exc.message


def test_repeated_stage_names_are_left_to_the_checks() -> None:
    df = parse_dockerfile("FROM a AS x\nFROM b AS X\n")
    assert [s.name for s in df.stages] == ["x", "X"]


def test_keyword_property_names_instructions_as_docker_does() -> None:
    insts = (
        parse_dockerfile(
            "FROM a\nSTOPSIGNAL 1\nHEALTHCHECK NONE\nONBUILD RUN x\nWORKDIR /\nENTRYPOINT x\n"
        )
        .stages[0]
        .instructions
    )
    assert [i.keyword for i in insts] == [
        "STOPSIGNAL",
        "HEALTHCHECK",
        "ONBUILD",
        "WORKDIR",
        "ENTRYPOINT",
    ]


def test_instructions_are_frozen() -> None:
    inst = one("USER app")
    with pytest.raises(AttributeError):
        inst.line = 3  # type: ignore[misc]


# ---------------------------------------------------------------- garbage in


_PIECES = [
    "FROM",
    "from",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "LABEL",
    "HEALTHCHECK",
    "ONBUILD",
    "SHELL",
    "CMD",
    "VOLUME",
    "EXPOSE",
    "WORKDIR",
    "USER",
    "STOPSIGNAL",
    "MAINTAINER",
    "CMD",
    "NONE",
    "AS",
    "--mount=",
    "--mount=type=",
    "--from=",
    "--link",
    "--chmod",
    "--interval=",
    "--retries=",
    "--",
    "-",
    "<<",
    "<<-",
    "EOF",
    "'",
    '"',
    "\\",
    "`",
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    "$",
    "${",
    "#",
    "# syntax=",
    "# escape=",
    "\n",
    "\r\n",
    "\t",
    " ",
    "  ",
    "\ufeff",
    "\x00",
    "\u2028",
    "é",
    "1",
    "0",
    "-1",
    "1e999",
    "null",
    "true",
    "cache",
    "secret",
    "ssh",
    "tmpfs",
    "bind",
    "target=",
    "size=",
    "mode=",
    "uid=",
    "sharing=",
    "\x85",
]


def test_garbage_raises_only_dockerfile_errors() -> None:
    rng = random.Random(20240601)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(4000):
        pieces = rng.choices(_PIECES, k=rng.randint(0, 40))
        text = "".join(pieces)
        if rng.random() < 0.5:
            text = "FROM a\n" + text
        try:
            parse_dockerfile(text)
        except DockerfileError as exc:
            assert exc.line >= 0
            assert str(exc)
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
    # the corpus exercises both paths
    assert outcomes["ok"] > 50 and outcomes["error"] > 50


@pytest.mark.parametrize(
    "text",
    [
        "\x00",
        "FROM a\nRUN " + "[" * 50_000,
        "FROM a\nHEALTHCHECK --interval=" + "9" * 5000 + "s CMD x",
        "FROM a\nRUN --mount=type=cache,uid=" + "9" * 5000 + " x",
        'FROM a\nCMD ["\\ud800"]',
        "FROM a\nRUN [1" + "0" * 5000 + "]",
        "FROM a\nCOPY <<\n",
        "FROM a\nCOPY << <<\n",
        "FROM a\nRUN <<''\n\n",
        "FROM a\nRUN \\\n",
        "FROM a\n\\\n",
        "\\",
        "FROM a\nENV \\",
        "FROM a\nLABEL '",
        'FROM a\nARG "',
        'FROM a\nCOPY --chown="unterminated a b',
    ],
)
def test_nasty_inputs(text: str) -> None:
    with contextlib.suppress(DockerfileError):
        parse_dockerfile(text)
