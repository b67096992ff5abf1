"""Docker config.json parsing: tables of cases."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from buildkit.registry.credentials import (
    Credential,
    CredentialsError,
    credentials_for,
    load_docker_config,
    normalize_host,
    parse_docker_config,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        ("https://GHCR.io", "ghcr.io"),
    ],
)
def test_normalize_host(key: str, want: str) -> None:
    assert normalize_host(key) == want


@pytest.mark.parametrize(
    ("config", "want", "warnings"),
    [
        ({}, {}, 0),
        ({"auths": {}}, {}, 0),
        (
            {"auths": {"https://index.docker.io/v1/": {"auth": b64("u:p")}}},
            {"docker.io": Credential("u", "p")},
            0,
        ),
        # the password may contain ":"
        ({"auths": {"r:5000": {"auth": b64("u:p:q")}}}, {"r:5000": Credential("u", "p:q")}, 0),
        # username/password fields instead of auth
        ({"auths": {"r": {"username": "u", "password": "p"}}}, {"r": Credential("u", "p")}, 0),
        # an entry without credentials (written by a helper login) is skipped silently
        ({"auths": {"ghcr.io": {}}}, {}, 0),
        # not base64, or no ":": skipped with a warning
        ({"auths": {"r": {"auth": "***"}}}, {}, 1),
        ({"auths": {"r": {"auth": b64("nocolon")}}}, {}, 1),
        # helpers are not run: a warning each
        (
            {"credsStore": "desktop", "auths": {"r": {"auth": b64("u:p")}}},
            {"r": Credential("u", "p")},
            1,
        ),
        ({"credHelpers": {"gcr.io": "gcloud", "x.io": "x"}}, {}, 2),
        ({"auths": {"r": {"identitytoken": "tok"}}}, {}, 1),
    ],
)
def test_parse_docker_config(config, want, warnings) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    assert parse_docker_config(json.dumps(config), seen.append) == want
    assert len(seen) == warnings, seen


@pytest.mark.parametrize("text", ["{", "[]", '{"auths": []}'])
def test_bad_config(text: str) -> None:
    with pytest.raises(CredentialsError):
        parse_docker_config(text)


def test_load_missing_file_is_no_credentials(tmp_path: Path) -> None:
    assert load_docker_config(tmp_path / "nope.json") == {}


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": b64("a:b")}}}))
    creds = load_docker_config(path)
    assert credentials_for(creds, "127.0.0.1:5000") == Credential("a", "b")
    assert credentials_for(creds, "127.0.0.1:5001") is None


def test_credentials_for_docker_hub_aliases() -> None:
    creds = {"https://index.docker.io/v1/": Credential("u", "p")}
    assert credentials_for(creds, "docker.io") == Credential("u", "p")


def test_password_not_in_repr() -> None:
    assert "secret" not in repr(Credential("u", "secret"))
