"""What the planner rejects after expansion: STOPSIGNAL signals, EXPOSE
ports, and a FROM whose `${v:?msg}` fails (the expansion error wins)."""

from __future__ import annotations

import pytest

from buildkit.dockerfile import parse_dockerfile
from buildkit.dockerfile.plan import BuildOptions, plan_build
from buildkit.dockerfile.steps import port_error, signal_error
from buildkit.errors import DockerfileError
from buildkit.platforms import parse_platform

AMD64 = parse_platform("linux/amd64")


def plan(text: str, **build_args: str) -> None:
    options = BuildOptions(target_platforms=(AMD64,), build_platform=AMD64, build_args=build_args)
    plan_build(parse_dockerfile(text, path="df/Dockerfile"), options)


@pytest.mark.parametrize(
    ("signal", "error"),
    [
        ("SIGTERM", None),
        ("sigterm", None),
        ("TERM", None),
        ("KILL", None),
        ("SIGRTMIN+3", None),
        ("RTMAX-1", None),
        ("1", None),
        ("9", None),
        ("64", None),
        ("0", "Invalid signal: 0"),
        ("65", "Invalid signal: 65"),
        ("-9", "Invalid signal: -9"),
        ("SIGFOO", "Invalid signal: SIGFOO"),
        ("SIG", "Invalid signal: SIG"),
        ("", "Invalid signal: "),
        ("SIGRTMIN+16", "Invalid signal: SIGRTMIN+16"),
        ("٣", "Invalid signal: ٣"),
    ],
)
def test_signal_error(signal: str, error: str | None) -> None:
    assert signal_error(signal) == error


@pytest.mark.parametrize(
    ("port", "error"),
    [
        ("80", None),
        ("1", None),
        ("65535", None),
        ("53/udp", None),
        ("53/UDP", None),
        ("9/sctp", None),
        ("80/tcp", None),
        ("8000-8010", None),
        ("8000-8000/udp", None),
        ("0", "invalid containerPort: 0"),
        ("65536", "invalid containerPort: 65536"),
        ("99999999", "invalid containerPort: 99999999"),
        ("http", "invalid containerPort: http"),
        ("", "invalid containerPort: "),
        ("80-", "invalid containerPort: 80-"),
        ("1-70000", "invalid containerPort: 1-70000"),
        ("8010-8000", "invalid range specified for containerPort: 8010-8000"),
        ("80/icmp", "invalid proto: icmp"),
        ("8080:80", "invalid containerPort: 8080:80"),
    ],
)
def test_port_error(port: str, error: str | None) -> None:
    assert port_error(port) == error


@pytest.mark.parametrize(
    ("text", "build_args", "line", "keyword", "message"),
    [
        ("FROM scratch\nSTOPSIGNAL SIGFOO\n", {}, 2, "STOPSIGNAL", "Invalid signal: SIGFOO"),
        (
            "FROM scratch\nARG S=BOGUS\nSTOPSIGNAL $S\n",
            {},
            3,
            "STOPSIGNAL",
            "Invalid signal: BOGUS",
        ),
        ("FROM scratch\nARG S\nSTOPSIGNAL $S\n", {"S": "0"}, 3, "STOPSIGNAL", "Invalid signal: 0"),
        ("FROM scratch\nEXPOSE 99999999\n", {}, 2, "EXPOSE", "invalid containerPort: 99999999"),
        (
            "FROM scratch\nARG P=80/icmp\nEXPOSE 22 $P\n",
            {},
            3,
            "EXPOSE",
            "invalid proto: icmp",
        ),
        (
            "FROM scratch\nARG P\nEXPOSE $P\n",
            {"P": "8010-8000"},
            3,
            "EXPOSE",
            "invalid range specified for containerPort: 8010-8000",
        ),
        ("FROM ${NOPE:?unset var}\n", {}, 1, "FROM", "NOPE: unset var"),
        ("ARG NOPE\nFROM ${NOPE:?unset var} AS x\n", {}, 2, "FROM", "NOPE: unset var"),
        ("FROM scratch\nFROM ${NOPE?no image here}\n", {}, 2, "FROM", "NOPE: no image here"),
        # Once the variable expands, BuildKit's arity error (it splits on blanks).
        (
            "ARG NOPE=alpine\nFROM ${NOPE:?unset var}\n",
            {},
            2,
            "FROM",
            "FROM requires either one or three arguments",
        ),
        ("FROM a b\n", {}, 1, "FROM", "FROM requires either one or three arguments"),
    ],
)
def test_rejected(
    text: str, build_args: dict[str, str], line: int, keyword: str, message: str
) -> None:
    with pytest.raises(DockerfileError, match=message.replace("+", r"\+")) as info:
        plan(text, **build_args)
    assert info.value.line == line
    assert info.value.path == "df/Dockerfile"
    assert info.value.instruction == keyword


@pytest.mark.parametrize(
    "text",
    [
        "FROM scratch\nSTOPSIGNAL SIGKILL\nSTOPSIGNAL 9\nSTOPSIGNAL term\n",
        "FROM scratch\nARG S=SIGQUIT\nSTOPSIGNAL ${S}\n",
        "FROM scratch\nEXPOSE 80 443/tcp 53/udp 9/sctp 8000-8010\n",
        "ARG IMG=scratch\nFROM ${IMG:?need-an-image}\n",
    ],
)
def test_accepted(text: str) -> None:
    plan(text)
