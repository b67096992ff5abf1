"""End to end, with the real tools on both sides of Farm's registry code:

- skopeo copies a two-platform image Farm built into `farm serve`'s `/v2/`
  and back out, over the filesystem store and over the S3 store (moto);
- the real `farm` CLI builds FROM an image skopeo pushed into a stock
  registry (Debian's `docker-registry`) with htpasswd auth, credentials from
  `~/.docker/config.json`, and `--push`es the two-platform result there;
  a wrong password fails with a one-line auth error;
- buildah pulls what `farm build` made from `farm serve` and runs the arm64
  image under QEMU.

Every server listens on a free 127.0.0.1 port; every subprocess gets an
environment without proxies, so no traffic leaves the loopback interface.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.engine.conftest import write_context
from tests.interop.conftest import (  # noqa: F401  (buildah: a fixture)
    Buildah,
    FarmBuilder,
    buildah,
    need_arm64,
    need_root_and_overlay,
)
from tests.services.conftest import (
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    free_port,
    stop,
    wait_for_http,
)
from tests.services.test_registry_client import bcrypt_htpasswd, run_registry

pytestmark = [pytest.mark.services, pytest.mark.interop]

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "farm", "e2e-s3cret"
AMD64, ARM64 = "linux/amd64", "linux/arm64"

#: The busybox root of the target architecture, and nothing else.
BUSYBOX = "FROM scratch\nARG TARGETARCH\nADD rootfs-${TARGETARCH}.tar /\n"


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {name})")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Farm's, AWS's, Docker's or proxy
    settings (so every request goes straight to 127.0.0.1), plus `extra`."""
    dropped = ("FARM_", "AWS_", "DOCKER_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(dropped) and not k.lower().endswith("_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def tool(*argv: str | Path, timeout: float = 120, check: bool = True, env=None):  # type: ignore[no-untyped-def]
    cmd = [str(a) for a in argv]
    result = subprocess.run(
        cmd,
        capture_output=True,
        timeout=timeout,
        env=env if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {result.returncode}\n--- stdout\n"
            f"{result.stdout.decode(errors='replace')[-4000:]}\n--- stderr\n"
            f"{result.stderr.decode(errors='replace')[-4000:]}"
        )
    return result


def skopeo(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return tool(need_tool("skopeo"), "--insecure-policy", *args, check=check)


def farm_argv() -> list[str]:
    """The installed `farm` console script (the real CLI), or the same entry point."""
    script = Path(sys.executable).with_name("farm")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from api.cli import main; main()"]


def farm_cli(*args: str | Path, env: Mapping[str, str], cwd: Path, timeout: float = 240):  # type: ignore[no-untyped-def]
    """`farm ARGS` in a subprocess."""
    return subprocess.run(
        [*farm_argv(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def must(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


class FarmServe:
    """`farm serve` (the real CLI) in a subprocess on a free loopback port."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.env = dict(env)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FarmServe:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*farm_argv(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", "info"],
                env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            wait_for_http(f"http://{self.host}/v2/", self.proc, self.log)
        except BaseException:
            stop(self.proc)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop(self.proc)


# ------------------------------------------------------------ what the tests share


def archive_blobs(archive: Path) -> tuple[bytes, dict[str, bytes]]:
    """(index.json, blobs by digest) of an OCI archive."""
    blobs: dict[str, bytes] = {}
    index = b""
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile():
                continue
            f = tar.extractfile(member)
            assert f is not None
            if member.name == "index.json":
                index = f.read()
            elif member.name.startswith("blobs/sha256/"):
                blobs["sha256:" + member.name.rsplit("/", 1)[1]] = f.read()
    return index, blobs


def layout_blobs(layout: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (layout / "blobs" / "sha256").iterdir()}


@pytest.fixture(scope="module")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linux/amd64 + linux/arm64 busybox image, built by Farm as an OCI archive."""
    need_root_and_overlay()
    base = tmp_path_factory.mktemp("busybox-archive")
    context = write_context(base / "context", BUSYBOX)
    home = base / "farm-home"
    home.mkdir()
    return FarmBuilder(home).build_oci(context, base / "busybox.tar", platforms=(AMD64, ARM64))


def top_index(archive: Path) -> tuple[str, bytes]:
    """The digest and bytes of the image index an OCI archive's index.json names."""
    index_json, blobs = archive_blobs(archive)
    (top,) = json.loads(index_json)["manifests"]
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    return top["digest"], blobs[top["digest"]]


# ------------------------------------------------------------ 1. skopeo ⇄ farm serve


@pytest.mark.sandbox
@pytest.mark.timeout(240)
@pytest.mark.parametrize("driver", ["file", "s3"])
def test_skopeo_round_trip_through_farm_serve(
    driver: str, busybox_archive: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "serve-home"
    env = clean_env(FARM_HOME=str(home), FARM_API_TOKENS="", HOME=str(tmp_path))
    if driver == "file":
        env["FARM_STORAGE"] = f"file://{tmp_path / 'store'}"
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("bucket")
        env.update(
            FARM_STORAGE=f"s3://{bucket}/farm-registry",
            FARM_S3_ENDPOINT_URL=endpoint,
            FARM_S3_PATH_STYLE="true",
            FARM_S3_REGION=S3_REGION,
            AWS_ACCESS_KEY_ID=S3_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY,
            AWS_DEFAULT_REGION=S3_REGION,
        )
    index_digest, index = top_index(busybox_archive)
    _, sent = archive_blobs(busybox_archive)
    assert len(sent) == 7  # the index, 2 manifests, 2 configs, 2 layers

    with FarmServe(env, tmp_path / "serve.log") as server:
        ref = f"docker://{server.host}/app:1"
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci-archive:{busybox_archive}", ref)

        raw = skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout
        assert raw == index  # byte for byte
        platforms = sorted(
            (m["platform"]["os"], m["platform"]["architecture"])
            for m in json.loads(raw)["manifests"]
        )
        assert platforms == [("linux", "amd64"), ("linux", "arm64")]

        out = tmp_path / "pulled"
        skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{out}:1")

    pulled = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in pulled["manifests"]] == [index_digest]
    assert layout_blobs(out) == set(sent)
    for digest, data in sent.items():
        assert (out / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes() == data
    if driver == "s3":
        s3 = request.getfixturevalue("s3")
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=request.getfixturevalue("bucket"), Prefix="farm-registry/"
            )
            for o in page.get("Contents", [])
        ]
        assert any(k.endswith("/_manifests/tags/1/current/link") for k in keys), keys
    else:
        assert (tmp_path / "store" / "docker" / "registry" / "v2" / "repositories" / "app").is_dir()


# ------------------------------------------------------------ 2. farm build ⇄ htpasswd registry


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[str]:
    """`127.0.0.1:PORT` of docker-registry with htpasswd auth (USER/PASSWORD)."""
    with run_registry(tmp_path / "registry", htpasswd=bcrypt_htpasswd(USER, PASSWORD)) as reg:
        yield reg.host


def docker_home(base: Path, registry: str, password: str) -> Path:
    """A HOME whose ~/.docker/config.json holds USER:`password` for `registry`."""
    home = base
    (home / ".docker").mkdir(parents=True)
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return home


APP = """\
FROM {registry}/base/busybox:1
RUN uname -m > /arch
"""


@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_farm_builds_from_and_pushes_to_an_htpasswd_registry(
    busybox_archive: Path, auth_registry: str, tmp_path: Path
) -> None:
    need_arm64()
    registry = auth_registry
    skopeo("copy", "--all", "--dest-tls-verify=false", f"--dest-creds={USER}:{PASSWORD}",
           f"oci-archive:{busybox_archive}", f"docker://{registry}/base/busybox:1")  # fmt: skip
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(APP.format(registry=registry))
    target = f"{registry}/app/out:1"

    def argv(tag: str) -> tuple[str | Path, ...]:
        return ("build", "--progress", "plain", "--platform", f"{AMD64},{ARM64}", "--push",
                "-t", tag, context)  # fmt: skip

    # Loopback registries speak plain HTTP without --insecure-registry.
    home = docker_home(tmp_path / "user", registry, PASSWORD)
    env = clean_env(HOME=str(home), FARM_HOME=str(tmp_path / "farm-home"))
    built = must(farm_cli(*argv(target), env=env, cwd=tmp_path))
    digest = built.stdout.strip().splitlines()[-1]
    assert digest.startswith("sha256:")

    ref = f"docker://{target}"
    creds = f"--creds={USER}:{PASSWORD}"
    raw = skopeo("inspect", "--raw", "--tls-verify=false", creds, ref).stdout
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    by_arch = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert sorted(by_arch) == ["amd64", "arm64"]
    assert {m["platform"]["os"] for m in index["manifests"]} == {"linux"}

    # Each platform is the pushed base plus the RUN's layer, which ran on that arch.
    base_index = json.loads(
        skopeo("inspect", "--raw", "--tls-verify=false", creds,
               f"docker://{registry}/base/busybox:1").stdout
    )  # fmt: skip
    base_by_arch = {m["platform"]["architecture"]: m["digest"] for m in base_index["manifests"]}
    out = tmp_path / "pulled"
    skopeo("copy", "--all", "--src-tls-verify=false", f"--src-creds={USER}:{PASSWORD}",
           ref, f"oci:{out}:1")  # fmt: skip
    for arch, uname in (("amd64", "x86_64"), ("arm64", "aarch64")):
        manifest = json.loads((out / "blobs" / "sha256" / by_arch[arch][7:]).read_text())
        base_manifest = json.loads(
            skopeo("inspect", "--raw", "--tls-verify=false", creds,
                   f"docker://{registry}/base/busybox@{base_by_arch[arch]}").stdout
        )  # fmt: skip
        layers = [layer["digest"] for layer in manifest["layers"]]
        assert layers[:-1] == [layer["digest"] for layer in base_manifest["layers"]]
        with tarfile.open(out / "blobs" / "sha256" / layers[-1][7:]) as tar:
            f = tar.extractfile("arch")
            assert f is not None and f.read().decode() == f"{uname}\n"

    # A wrong password: a one-line auth error and exit status 1, no traceback.
    # Once in a fresh FARM_HOME (the pull of the base is refused) ...
    wrong = docker_home(tmp_path / "wrong-user", registry, "not-the-password")
    env_wrong = clean_env(HOME=str(wrong), FARM_HOME=str(tmp_path / "farm-home-2"))
    failed = farm_cli(*argv(target), env=env_wrong, cwd=tmp_path)
    assert_auth_failure(failed, registry)
    # ... and once where the base and every step are cached (the push is refused).
    env_wrong["FARM_HOME"] = str(tmp_path / "farm-home")
    failed = farm_cli(*argv(f"{registry}/app/other:1"), env=env_wrong, cwd=tmp_path)
    assert_auth_failure(failed, registry)
    assert "CACHED" in failed.stderr and "ERROR: pull" not in failed.stderr
    assert f"{registry}/app/other" in failed.stderr.strip().splitlines()[-1]
    denied = skopeo("inspect", "--raw", "--tls-verify=false", creds,
                    f"docker://{registry}/app/other:1", check=False)  # fmt: skip
    assert denied.returncode != 0  # nothing was pushed under the wrong name


def assert_auth_failure(result: subprocess.CompletedProcess[str], registry: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr[-4000:])
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert errors, result.stderr[-4000:]
    message = errors[-1].lower()
    assert registry in message, errors[-1]
    assert any(w in message for w in ("unauthorized", "authentication", "credentials", "401")), (
        errors[-1]
    )
    assert "not-the-password" not in result.stderr  # never print a password


# ------------------------------------------------------------ 3. buildah ⇐ farm serve


HELLO = BUSYBOX + 'RUN uname -m > /arch\nCMD ["cat", "/arch"]\n'


@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_buildah_pulls_from_farm_serve_and_runs_arm64(buildah: Buildah, tmp_path: Path) -> None:  # noqa: F811
    need_arm64()
    context = write_context(tmp_path / "ctx", HELLO)
    farm_home = tmp_path / "farm-home"
    env = clean_env(HOME=str(tmp_path), FARM_HOME=str(farm_home), FARM_API_TOKENS="")
    must(farm_cli("build", "--progress", "plain", "--platform", f"{AMD64},{ARM64}",
                  "-t", "hello:1", context, env=env, cwd=tmp_path))  # fmt: skip

    with FarmServe(env, tmp_path / "serve.log") as server:
        ref = f"docker://{server.host}/hello:1"
        container = buildah("from", "--tls-verify=false", "--arch", "arm64", ref).stdout
        container = container.strip().splitlines()[-1]
    # The image is in buildah's storage now: the server may go.
    inspect = json.loads(buildah("inspect", "--type", "container", container).stdout)
    assert (inspect["OCIv1"]["os"], inspect["OCIv1"]["architecture"]) == ("linux", "arm64")
    ran = buildah("run", "--isolation", "chroot", container, "--", "uname", "-m")
    assert ran.stdout.strip() == "aarch64"
    built = buildah("run", "--isolation", "chroot", container, "--", "cat", "/arch")
    assert built.stdout == "aarch64\n"  # Farm's RUN ran under QEMU too
