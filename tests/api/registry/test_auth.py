"""Farm mode (FARM_API_TOKENS set): the bearer token flow, basic auth, roles,
anonymous pulls by prefix, and tokens verified by a second API process."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import time
from collections.abc import Iterator

import httpx
import pytest

from api.app import create_app
from api.registry.auth import (
    TokenConfigError,
    load_or_create_secret,
    parse_api_tokens,
    sign_token,
)
from api.registry.config import RegistryConfig
from buildkit.digest import Digest
from buildkit.store.filesystem import FilesystemStore
from tests.api.registry.conftest import ProcessServer, Registry, ThreadServer, codes, push_image
from workers.settings import Settings

TOKENS = "pushtok,pulltok:pull,admintok:admin"


@pytest.fixture(scope="module")
def farm(tmp_path_factory) -> Iterator[Registry]:  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("farm") / "home"
    settings = Settings(home=home, api_tokens=TOKENS, registry_anonymous_pull="public, team/docs/")
    config = RegistryConfig.from_settings(settings)
    store = FilesystemStore(home / "registry")
    with ThreadServer(create_app(settings, store=store, config=config)) as server:
        yield Registry(server.url, store, home)


def challenge(response: httpx.Response) -> dict[str, str]:
    scheme, _, params = response.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Bearer"
    return dict(re.findall(r'(\w+)="([^"]*)"', params))


def token(farm: Registry, scope: str, auth: tuple[str, str] | None = None) -> str:
    with farm.client() as client:
        r = client.get("/v2/token", params={"service": "farm", "scope": scope}, auth=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token"] == body["access_token"] and body["expires_in"] == 300
        return body["token"]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_no_credentials_is_401_with_a_challenge(farm):
    with farm.client() as client:
        r = client.get("/v2/")
        assert (r.status_code, codes(r)) == (401, ["UNAUTHORIZED"])
        assert challenge(r) == {"realm": f"{farm.url}/v2/token", "service": "farm"}
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        r = client.get("/v2/app/manifests/1")
        assert r.status_code == 401
        assert challenge(r)["scope"] == "repository:app:pull"
        r = client.post("/v2/app/blobs/uploads/")
        assert challenge(r)["scope"] == "repository:app:pull,push"
        r = client.delete("/v2/app/manifests/1")
        assert challenge(r)["scope"] == "repository:app:delete"
        assert client.head("/v2/app/manifests/1").status_code == 401


def test_token_flow(farm):
    with farm.client() as anonymous:
        first = anonymous.post("/v2/app/blobs/uploads/")
    c = challenge(first)
    with httpx.Client(timeout=30) as client:
        r = client.get(c["realm"], params={"service": c["service"], "scope": c["scope"]},
                       auth=("farm", "pushtok"))  # fmt: skip
        assert r.status_code == 200
        t = r.json()["token"]
    with farm.client(headers=bearer(t)) as client:
        assert client.get("/v2/").status_code == 200
        _, manifest = push_image(client, "app", "1", "token-flow")
        assert client.get("/v2/app/manifests/1").content == manifest
        r = client.get("/v2/other/manifests/1")  # the token is for app only
        assert r.status_code == 401
        want = {"scope": "repository:other:pull", "error": "insufficient_scope"}
        assert challenge(r).items() >= want.items()


def test_basic_auth_with_an_api_token(farm):
    with farm.client(auth=("anyone", "pushtok")) as client:
        assert client.get("/v2/").status_code == 200
        push_image(client, "basic", "1", "basic")
        assert client.get("/v2/basic/tags/list").json()["tags"] == ["1"]
    with farm.client(headers=bearer("pushtok")) as client:  # the API token itself as bearer
        assert client.get("/v2/basic/manifests/1").status_code == 200


@pytest.mark.parametrize(
    "auth",
    [("farm", "wrong"), ("farm", ""), ("pushtok", "")],
)
def test_wrong_basic_credentials_are_401(farm, auth):
    with farm.client(auth=auth) as client:
        r = client.get("/v2/basic/manifests/1")
        assert (r.status_code, codes(r)) == (401, ["UNAUTHORIZED"])
        assert "WWW-Authenticate" in r.headers
        assert client.get("/v2/token", params={"scope": "repository:basic:pull"}).status_code == 401


def test_wrong_bearer_tokens_are_401(farm):
    claims = {"aud": "farm", "exp": time.time() + 60, "sub": "x", "role": "admin",
              "access": [{"type": "repository", "name": "basic", "actions": ["pull"]}]}  # fmt: skip
    forged = sign_token(b"not the farm's secret", claims)
    good = token(farm, "repository:basic:pull", ("farm", "pushtok"))
    payload, _, signature = good.partition(".")
    with farm.client() as client:
        for value in ("garbage", forged, payload + "." + signature[::-1], "wrongtok"):
            r = client.get("/v2/basic/manifests/1", headers=bearer(value))
            assert (r.status_code, codes(r)) == (401, ["UNAUTHORIZED"]), value


def test_expired_token_is_401(farm, monkeypatch):
    with farm.client() as client:
        r = client.get(
            "/v2/token", params={"scope": "repository:basic:pull"}, auth=("f", "pushtok")
        )
        t = r.json()["token"]
        assert client.get("/v2/basic/manifests/1", headers=bearer(t)).status_code == 200
        future = time.time() + 301
        monkeypatch.setattr(time, "time", lambda: future)  # the server runs in this process
        assert client.get("/v2/basic/manifests/1", headers=bearer(t)).status_code == 401


def test_roles(farm):
    with farm.client(auth=("admin", "admintok")) as admin:
        push_image(admin, "roles", "1", "roles")
        push_image(admin, "roles", "2", "roles2")
    with farm.client(auth=("f", "pulltok")) as puller:
        assert puller.get("/v2/roles/manifests/1").status_code == 200
        r = puller.post("/v2/roles/blobs/uploads/")
        assert (r.status_code, codes(r)) == (403, ["DENIED"])
    t = token(farm, "repository:roles:pull,push", ("f", "pulltok"))  # granted pull only
    with farm.client(headers=bearer(t)) as puller:
        assert puller.get("/v2/roles/manifests/1").status_code == 200
        r = puller.post("/v2/roles/blobs/uploads/")
        assert (r.status_code, codes(r)) == (403, ["DENIED"])
    with farm.client(auth=("f", "pushtok")) as pusher:
        r = pusher.delete("/v2/roles/manifests/1")
        assert (r.status_code, codes(r)) == (403, ["DENIED"])
    t = token(farm, "repository:roles:delete", ("f", "admintok"))
    with farm.client(headers=bearer(t)) as admin:
        assert admin.delete("/v2/roles/manifests/1").status_code == 202
    with farm.client(auth=("f", "admintok")) as admin:
        assert admin.delete("/v2/roles/manifests/2").status_code == 202


def test_anonymous_pull_by_prefix(farm):
    with farm.client(auth=("f", "pushtok")) as pusher:
        _, public = push_image(pusher, "public/app", "1", "public")
        _, docs = push_image(pusher, "team/docs/site", "1", "docs")
        push_image(pusher, "publicity", "1", "not-public")  # a prefix is whole path components
        push_image(pusher, "team/private", "1", "private")
    with farm.client() as anonymous:
        assert anonymous.get("/v2/public/app/manifests/1").content == public
        assert anonymous.get("/v2/team/docs/site/manifests/1").content == docs
        assert anonymous.get("/v2/public/app/tags/list").status_code == 200
        for path in ("/v2/publicity/manifests/1", "/v2/team/private/manifests/1"):
            assert anonymous.get(path).status_code == 401
        r = anonymous.post("/v2/public/app/blobs/uploads/")
        assert r.status_code == 401
        # the token flow without credentials: a token for what anyone may do
        t = token(farm, "repository:public/app:pull,push")
        assert anonymous.get("/v2/public/app/manifests/1", headers=bearer(t)).status_code == 200
        assert anonymous.post("/v2/public/app/blobs/uploads/", headers=bearer(t)).status_code == 401
        t = token(farm, "repository:team/private:pull")
        assert anonymous.get("/v2/team/private/manifests/1", headers=bearer(t)).status_code == 401


def test_mount_needs_pull_on_the_source(farm):
    with farm.client(auth=("f", "pushtok")) as pusher:
        digest = Digest.of(b"mountable")
        r = pusher.post("/v2/src/blobs/uploads/", params={"digest": digest}, content=b"mountable")
        assert r.status_code == 201
    t = token(farm, "repository:dst:pull,push", ("f", "pushtok"))  # nothing for src
    with farm.client(headers=bearer(t)) as client:
        r = client.post("/v2/dst/blobs/uploads/", params={"mount": digest, "from": "src"})
        assert r.status_code == 202  # an upload instead of a mount
    t = token(farm, "repository:dst:pull,push repository:src:pull", ("f", "pushtok"))
    with farm.client(headers=bearer(t)) as client:
        r = client.post("/v2/dst/blobs/uploads/", params={"mount": digest, "from": "src"})
        assert r.status_code == 201


def test_oauth_password_grant(farm):
    with farm.client() as client:
        r = client.post("/v2/token", data={"grant_type": "password", "username": "ci",
                                           "password": "pushtok", "service": "farm",
                                           "scope": "repository:oauth:pull,push"})  # fmt: skip
        assert r.status_code == 200
        t = r.json()["access_token"]
        assert client.post("/v2/oauth/blobs/uploads/", headers=bearer(t)).status_code == 202
        r = client.post("/v2/token", data={"grant_type": "password", "password": "nope"})
        assert r.status_code == 401


def test_a_second_process_verifies_the_tokens(farm):
    env = {"FARM_HOME": str(farm.home), "FARM_STORAGE": "", "FARM_API_TOKENS": TOKENS,
           "FARM_REGISTRY_ANONYMOUS_PULL": "public"}  # fmt: skip
    with farm.client(auth=("f", "pushtok")) as pusher:
        _, manifest = push_image(pusher, "shared", "1", "shared")
    t = token(farm, "repository:shared:pull", ("f", "pushtok"))
    with ProcessServer(env) as second, httpx.Client(base_url=second.url, timeout=30) as client:
        assert client.get("/v2/shared/manifests/1", headers=bearer(t)).content == manifest
        assert client.get("/v2/shared/manifests/1").status_code == 401
        assert client.get("/v2/shared/manifests/1", auth=("x", "pulltok")).status_code == 200
        with farm.client(auth=("f", "pushtok")) as pusher:
            _, public = push_image(pusher, "public/p", "1", "p")
        assert client.get("/v2/public/p/manifests/1").content == public


# ---------------------------------------------------------------- the bearer token key


def test_a_token_signed_with_a_key_derived_from_the_api_tokens_is_401(farm):
    """The key used to be sha256 of the API tokens: anyone holding them (a pull
    token suffices, with the others guessed or leaked) could sign itself admin."""
    old_key = hashlib.sha256(
        b"farm-registry-bearer-v1\0" + "\0".join(sorted(parse_api_tokens(TOKENS))).encode()
    ).digest()
    claims = {"aud": "farm", "exp": time.time() + 60, "sub": "x", "role": "admin",
              "access": [{"type": "repository", "name": "forged", "actions": ["pull", "push", "delete"]}]}  # fmt: skip
    forged = sign_token(old_key, claims)
    with farm.client(headers=bearer(forged)) as client:
        r = client.post("/v2/forged/blobs/uploads/")
        assert (r.status_code, codes(r)) == (401, ["UNAUTHORIZED"])
        assert client.get("/v2/forged/tags/list").status_code == 401


def test_the_key_is_random_and_kept_0600_in_the_home(farm):
    path = farm.home / "registry-token.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_bytes()
    assert len(key) == 32
    assert (
        RegistryConfig.from_settings(Settings(home=farm.home, api_tokens=TOKENS)).token_secret
        == key
    )
    # the configured secret wins (several hosts)
    settings = Settings(home=farm.home, api_tokens=TOKENS, registry_token_secret="s3cret")
    assert RegistryConfig.from_settings(settings).token_secret == b"s3cret"


def test_two_apps_on_the_same_home_verify_each_others_tokens(tmp_path):
    home = tmp_path / "home"
    store = FilesystemStore(home / "registry")
    servers = []
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            settings = Settings(home=home, api_tokens=TOKENS)
            app = create_app(settings, store=store, config=RegistryConfig.from_settings(settings))
            servers.append(stack.enter_context(ThreadServer(app)))
        assert stat.S_IMODE((home / "registry-token.key").stat().st_mode) == 0o600
        first, second = (Registry(s.url, store, home) for s in servers)
        with first.client(auth=("f", "pushtok")) as pusher:
            push_image(pusher, "both", "1", "both")
        for signer, verifier in ((first, second), (second, first)):
            t = token(signer, "repository:both:pull", ("f", "pulltok"))
            with verifier.client(headers=bearer(t)) as client:
                assert client.get("/v2/both/manifests/1").status_code == 200
    other = tmp_path / "other"  # another home: another key, the tokens do not verify
    settings = Settings(home=other, api_tokens=TOKENS)
    assert (
        RegistryConfig.from_settings(settings).token_secret
        != (home / "registry-token.key").read_bytes()
    )


def test_concurrent_creation_agrees_on_one_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_or_create_secret(tmp_path / "h"), range(16)))
    assert len(keys) == 1 and len(keys.pop()) == 32
    assert [p.name for p in (tmp_path / "h").iterdir()] == ["registry-token.key"]


def test_a_key_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "registry-token.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(TokenConfigError, match="0600"):
        load_or_create_secret(tmp_path)
    path.chmod(0o600)
    assert load_or_create_secret(tmp_path) == path.read_bytes()


def test_no_api_tokens_no_key_file(tmp_path):
    config = RegistryConfig.from_settings(Settings(home=tmp_path, api_tokens=""))
    assert not config.auth_enabled and not (tmp_path / "registry-token.key").exists()
