"""Pure helpers of the registry: tables of cases, no HTTP."""

from __future__ import annotations

import pytest

from api.commands.serve import is_loopback
from api.registry.auth import (
    Access,
    Role,
    TokenConfigError,
    parse_api_tokens,
    parse_scopes,
    sign_token,
    verify_token,
)
from api.registry.errors import RegistryHTTPError
from api.registry.routes import _byte_range
from api.registry.service import accepts, paginate

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        ([], True),
        (["*/*"], True),
        ([OCI_MANIFEST], True),
        (["application/vnd.docker.distribution.manifest.v2+json"], False),
        (["application/vnd.docker.distribution.manifest.v2+json", OCI_MANIFEST], True),
        ([f"application/json, {OCI_MANIFEST};q=0.5"], True),
        ([f"{OCI_MANIFEST};q=0"], False),
        (["application/*"], True),
        (["text/html"], False),
    ],
)
def test_accepts(headers, want):
    assert accepts(headers, OCI_MANIFEST) is want


@pytest.mark.parametrize(
    ("n", "last", "want", "more"),
    [
        (None, None, ["a", "b", "c", "d"], False),
        (2, None, ["a", "b"], True),
        (2, "b", ["c", "d"], False),
        (None, "b", ["c", "d"], False),
        (0, None, [], False),
        (10, None, ["a", "b", "c", "d"], False),
        (1, "d", [], False),
    ],
)
def test_paginate(n, last, want, more):
    assert paginate(["a", "b", "c", "d"], n, last) == (want, more)


def test_parse_api_tokens():
    assert parse_api_tokens("") == {}
    assert parse_api_tokens("a, b:pull,c:admin\nd:push") == {
        "a": Role.PUSH,
        "b": Role.PULL,
        "c": Role.ADMIN,
        "d": Role.PUSH,
    }
    with pytest.raises(TokenConfigError):
        parse_api_tokens("a:root")


def test_parse_scopes():
    assert parse_scopes(
        ["repository:team/app:pull,push", "repository:b:pull registry:catalog:*"]
    ) == [
        Access("repository", "team/app", frozenset({"pull", "push"})),
        Access("repository", "b", frozenset({"pull"})),
        Access("registry", "catalog", frozenset({"*"})),
    ]
    assert parse_scopes(["nonsense"]) == []


def test_tokens_are_signed_and_expire():
    claims = {"aud": "farm", "exp": 2000, "sub": "x"}
    token = sign_token(b"k", claims)
    assert verify_token(b"k", token, "farm", now=1000) == claims
    assert verify_token(b"other", token, "farm", now=1000) is None
    assert verify_token(b"k", token, "other-service", now=1000) is None
    assert verify_token(b"k", token, "farm", now=3000) is None
    signature = token.partition(".")[2]
    forged = sign_token(b"k", {**claims, "sub": "admin"}).partition(".")[0] + "." + signature
    assert verify_token(b"k", forged, "farm", now=1000) is None
    assert verify_token(b"k", "garbage", "farm") is None


@pytest.mark.parametrize(
    ("header", "size", "want"),
    [
        (None, 10, None),
        ("bytes=0-3", 10, (0, 3)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=0-1,4-5", 10, None),
    ],
)
def test_byte_range(header, size, want):
    assert _byte_range(header, size) == want


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-12", "bytes=5-3"])
def test_byte_range_unsatisfiable(header):
    with pytest.raises(RegistryHTTPError) as info:
        _byte_range(header, 10)
    assert info.value.status == 416
    assert info.value.headers["Content-Range"] == "bytes */10"


@pytest.mark.parametrize(
    ("host", "want"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False), ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host, want):
    assert is_loopback(host) is want


def test_serve_refuses_a_public_address_without_tokens(monkeypatch):
    from click.testing import CliRunner

    from api.cli import main
    from workers.settings import get_settings

    monkeypatch.delenv("FARM_API_TOKENS", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0" in result.output
    assert "FARM_API_TOKENS" in result.output
