import pytest

from buildkit.errors import PlatformError
from buildkit.platforms import (
    Platform,
    matches,
    parse_binfmt_handler,
    parse_platform,
    parse_platforms,
)

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/386", "linux/386"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/s390x", "linux/s390x"),
        ("linux/riscv64", "linux/riscv64"),
        ("linux/mips64le", "linux/mips64le"),
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64"),
        ("armhf", "linux/arm/v7"),
        ("armel", "linux/arm/v6"),
        ("i386", "linux/386"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("  linux/arm64 ", "linux/arm64"),
        ("arm64", "linux/arm64"),
    ],
)
def test_parse_platform(text, want):
    assert str(parse_platform(text)) == want


def test_local_is_the_host_given():
    assert parse_platform("local", local=ARM64) == ARM64


@pytest.mark.parametrize(
    "text",
    [
        "",
        "linux/",
        "linux/sparc",
        "plan9/amd64",
        "linux/arm64/v5",
        "linux/amd64/v7",
        "a/b/c/d",
        "/amd64",
    ],
)
def test_invalid_platform_names_the_string_and_valid_forms(text):
    with pytest.raises(PlatformError) as err:
        parse_platform(text)
    assert repr(text) in str(err.value)
    assert "linux/arm64" in str(err.value)


def test_comma_list_keeps_order_and_drops_duplicates():
    got = parse_platforms("linux/arm64,linux/amd64,aarch64")
    assert got == (ARM64, AMD64)


def test_comma_list_with_empty_entry_is_an_error():
    with pytest.raises(PlatformError, match="empty entry"):
        parse_platforms("linux/amd64,,linux/arm64")


def test_to_oci_and_arch_variant():
    arm7 = parse_platform("linux/arm/v7")
    assert arm7.to_oci() == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert arm7.arch_variant == "armv7"
    assert AMD64.to_oci() == {"architecture": "amd64", "os": "linux"}


@pytest.mark.parametrize(
    ("want", "have", "ok"),
    [
        ("linux/arm64", "linux/arm64", True),
        ("linux/arm64", "linux/amd64", False),
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/amd64/v3", "linux/amd64", True),
    ],
)
def test_matches(want, have, ok):
    assert matches(parse_platform(want), parse_platform(have)) is ok


def test_parse_binfmt_handler():
    text = (
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"
        "flags: POF\noffset 0\nmagic 7f454c46\n"
    )
    h = parse_binfmt_handler("qemu-aarch64", text)
    assert h.enabled and h.flags == "POF"
    assert h.interpreter.endswith("aarch64-binfmt-P")
    assert not parse_binfmt_handler("x", "disabled\nflags: \n").enabled
