import pytest

from buildkit.errors import ReferenceFormatError
from buildkit.reference import Reference, normalize, parse_reference

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.19", "docker.io/library/alpine:3.19"),
        ("library/alpine", "docker.io/library/alpine:latest"),
        ("user/app", "docker.io/user/app:latest"),
        ("user/team/app:v1", "docker.io/user/team/app:v1"),
        ("docker.io/alpine", "docker.io/library/alpine:latest"),
        ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
        ("ghcr.io/owner/app:1.0", "ghcr.io/owner/app:1.0"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("127.0.0.1:5000/team/app:t", "127.0.0.1:5000/team/app:t"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
        ("Registry/app", "Registry/app:latest"),  # upper case: a host, as Docker reads it
        (f"alpine@sha256:{HEX}", f"docker.io/library/alpine@sha256:{HEX}"),
        (f"alpine:3.19@sha256:{HEX}", f"docker.io/library/alpine:3.19@sha256:{HEX}"),
        ("my-app_x.y__z", "docker.io/library/my-app_x.y__z:latest"),
        ("a---b", "docker.io/library/a---b:latest"),
        ("alpine:Tag_1.0-x", "docker.io/library/alpine:Tag_1.0-x"),
    ],
)
def test_normalize(text: str, want: str) -> None:
    assert normalize(text) == want


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Alpine", "must be lowercase"),
        ("user/App:1", "must be lowercase"),
        ("alpine:", "bad tag"),
        ("alpine:-x", "bad tag"),
        (":1", "no repository name"),
        ("a b", "invalid reference format"),
        ("alpine@sha256:abc", "bad digest"),
        (f"alpine@sha256:{'A' * 64}", "lower-case hex"),
        ("-alpine", "invalid reference format"),
        ("alpine_", "invalid reference format"),
        ("a" * 64, "64-byte hexadecimal"),
        ("reg.io:/app", "bad registry host"),
        ("x/" + "a" * 300, "255 characters"),
    ],
)
def test_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ReferenceFormatError) as info:
        normalize(text)
    assert fragment in str(info.value)


def test_parts() -> None:
    ref = parse_reference("localhost:5000/team/app:1.2")
    assert ref == Reference("localhost:5000", "team/app", "1.2", "")
    assert ref.name == "localhost:5000/team/app"
    assert ref.familiar_name == "localhost:5000/team/app"
    assert parse_reference("alpine").familiar_name == "alpine"
    assert parse_reference("alpine").tag == ""  # no default tag until asked
    assert str(parse_reference("alpine").with_default_tag()) == "docker.io/library/alpine:latest"
    digested = parse_reference(f"alpine@sha256:{HEX}")
    assert digested.with_default_tag() is digested
