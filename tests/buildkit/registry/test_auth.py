"""WWW-Authenticate parsing, scopes and token answers: tables of cases."""

from __future__ import annotations

import pytest

from buildkit.registry.auth import (
    Challenge,
    basic_authorization,
    merge_scopes,
    parse_www_authenticate,
    token_from_response,
)


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("", []),
        ('Basic realm="basic-realm"', [Challenge("basic", {"realm": "basic-realm"})]),
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/alpine:pull",
                    },
                )
            ],
        ),
        # a comma inside quotes, several scopes, spaces around "=" and ","
        (
            'Bearer realm = "http://127.0.0.1:1/t" , scope="repository:a:pull,push repository:b:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "http://127.0.0.1:1/t",
                        "scope": "repository:a:pull,push repository:b:pull",
                    },
                )
            ],
        ),
        # scheme and parameter names are case-insensitive; bare token values
        ("BASIC Realm=registry", [Challenge("basic", {"realm": "registry"})]),
        # two challenges in one header
        (
            'Bearer realm="http://t/token",service="s", Basic realm="r"',
            [
                Challenge("bearer", {"realm": "http://t/token", "service": "s"}),
                Challenge("basic", {"realm": "r"}),
            ],
        ),
        # escaped quote in a quoted value
        (r'Basic realm="a \"b\" c"', [Challenge("basic", {"realm": 'a "b" c'})]),
        # a scheme without parameters, then another
        (
            "Negotiate, Basic realm=x",
            [Challenge("negotiate", {}), Challenge("basic", {"realm": "x"})],
        ),
    ],
)
def test_parse_www_authenticate(header: str, want: list[Challenge]) -> None:
    assert parse_www_authenticate(header) == want


def test_challenge_properties() -> None:
    (c,) = parse_www_authenticate('Bearer realm="r",service="s",scope="x:a:pull y:b:push"')
    assert (c.realm, c.service, c.scopes) == ("r", "s", ("x:a:pull", "y:b:push"))


@pytest.mark.parametrize(
    ("groups", "want"),
    [
        ((("repository:a:pull",), ("repository:a:push",)), ("repository:a:pull,push",)),
        ((("repository:a:pull,push",), ("repository:a:pull",)), ("repository:a:pull,push",)),
        (
            (("repository:a:pull,push", "repository:b:pull"), ()),
            ("repository:a:pull,push", "repository:b:pull"),
        ),
        (
            (("registry:catalog:*",), ("repository:x/y:pull",)),
            ("registry:catalog:*", "repository:x/y:pull"),
        ),
        (((), ()), ()),
    ],
)
def test_merge_scopes(groups, want) -> None:  # type: ignore[no-untyped-def]
    assert merge_scopes(*groups) == want


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ({"token": "t1"}, "t1"),
        ({"access_token": "t2"}, "t2"),
        ({"token": "t1", "access_token": "t2"}, "t1"),
        ({}, ""),
        ({"token": 5}, ""),
        ([], ""),
        (None, ""),
    ],
)
def test_token_from_response(body, want) -> None:  # type: ignore[no-untyped-def]
    assert token_from_response(body) == want


def test_basic_authorization() -> None:
    assert basic_authorization("user", "p:w") == "Basic dXNlcjpwOnc="
