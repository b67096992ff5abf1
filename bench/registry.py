#!/usr/bin/env python3
"""Farm's /v2/ vs docker-registry: skopeo push and pull of a ~200 MB image over one S3 server.

    .venv/bin/python bench/registry.py [--repeat N] [--size-mb 200] [--output-md FILE]
        [--farm-workers 1,2] [--redirect]

One moto S3 server (real HTTP on 127.0.0.1) holds one bucket; `farm serve`
stores under `s3://BUCKET/farm`, Debian's docker-registry (CNCF Distribution
2.8, S3 driver) under `/registry`. Every repeat, for each registry in turn:
the bucket is emptied (so every blob really travels to S3), skopeo pushes the
cached OCI layout to a fresh repository, then pulls it back into a fresh OCI
directory. Times are wall-clock (time.monotonic) around skopeo; MB/s is the
image's bytes (layers + config + manifest, 1 MB = 10^6 bytes) over that time.
Only loopback traffic. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases as C
from common import Run, failed_cell, machine, markdown, run, timing_cell, wipe

REPO = C.REPO
sys.path.insert(0, str(REPO))

BUCKET = "farm-bench"
FARM_PREFIX = "farm"
REGISTRY_PREFIX = "registry"
ACCESS_KEY = "farm-bench"
SECRET_KEY = "farm-bench-secret"
REGION = "us-east-1"
LAYER_WEIGHTS = (4, 5, 6, 7, 8, 10)  # 200 MB -> 20, 25, 30, 35, 40, 50 MB layers
IMAGE_VERSION = 1  # bump when the generated image changes
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


# ------------------------------------------------------------ the image


def image_layout(size_mb: int) -> Path:
    """A deterministic OCI layout (tag `1`) of len(LAYER_WEIGHTS) gzip layers whose
    compressed sizes add up to about `size_mb` MB, made once under the cache.

    Each layer is a tar of one file; the file is 1 MiB blocks of 3/4 pseudo-random
    bytes and 1/4 log-like text, gzipped (level 1) until the layer reaches its
    share of `size_mb`: partially compressible, as real layers are."""
    from buildkit.digest import Digest
    from buildkit.image import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, ImageConfig, Manifest
    from buildkit.image import Descriptor as D
    from buildkit.oci_layout import LAYOUT_FILE, index_json

    target = C.CACHE / f"registry-image-{size_mb}mb-v{IMAGE_VERSION}"
    with C.locked(target.name):
        if (target / ".done").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        blobs = target / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        C.log(f"generating a {size_mb} MB image under {target} (once)")
        rng = random.Random(20250601)
        words = ("GET", "PUT", "POST", "ok", "miss", "hit", "retry", "cache", "layer", "blob")
        pool = "".join(
            f"{n:06d} {words[rng.randrange(10)]} /v2/app/blobs/{rng.getrandbits(32):08x} "
            f"{rng.randrange(1000)}ms\n"
            for n in range(40000)
        ).encode()
        quarter = 1 << 18
        layers, diff_ids = [], []
        total_weight = sum(LAYER_WEIGHTS)
        for i, weight in enumerate(LAYER_WEIGHTS):
            want = size_mb * 1_000_000 * weight // total_weight
            # stream blocks through gzip until the output reaches `want`; the tar
            # then holds exactly the blocks written (its size is known at the end)
            data_path = target / f".layer-{i}.raw"
            compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
            out_size = 0
            with open(data_path, "wb") as sink:
                while out_size < want:
                    block = rng.randbytes(3 * quarter)
                    start = rng.randrange(len(pool) - quarter)
                    block += pool[start : start + quarter]
                    sink.write(block)
                    out_size += len(compressor.compress(block))
            raw_size = data_path.stat().st_size
            info = tarfile.TarInfo(f"data/layer-{i}.bin")
            info.size, info.mode, info.mtime = raw_size, 0o644, 0
            layer_tmp = target / f".layer-{i}.gz"
            diff = hashlib.sha256()
            with open(layer_tmp, "wb") as out, open(data_path, "rb") as raw:
                gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip wrapper, mtime 0

                def put(chunk: bytes, gz: Any = gz, out: Any = out, diff: Any = diff) -> None:
                    diff.update(chunk)
                    out.write(gz.compress(chunk))

                put(info.tobuf(format=tarfile.USTAR_FORMAT))
                while chunk := raw.read(1 << 20):
                    put(chunk)
                put(b"\0" * (-raw_size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE))
                out.write(gz.flush())
            data_path.unlink()
            digest = _file_digest(layer_tmp)
            os.replace(layer_tmp, blobs / digest.hex)
            layers.append(D(OCI_LAYER_GZIP, digest, (blobs / digest.hex).stat().st_size))
            diff_ids.append(Digest("sha256:" + diff.hexdigest()))
            C.log(f"  layer {i}: {layers[-1].size / 1e6:.1f} MB ({raw_size / 1e6:.1f} MB raw)")
        config = ImageConfig(architecture="amd64", os="linux", diff_ids=tuple(diff_ids)).to_json()
        config_desc = _put(blobs, config, OCI_CONFIG)
        manifest = Manifest(config=config_desc, layers=tuple(layers)).to_json()
        manifest_desc = _put(blobs, manifest, OCI_MANIFEST)
        (target / "oci-layout").write_bytes(LAYOUT_FILE)
        (target / "index.json").write_bytes(index_json(manifest_desc, "bench/img:1"))
        (target / ".done").touch()
        return target


def _file_digest(path: Path) -> Any:
    from buildkit.digest import Digest

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return Digest("sha256:" + h.hexdigest())


def _put(blobs: Path, data: bytes, media_type: str) -> Any:
    from buildkit.image import descriptor_for

    desc = descriptor_for(data, media_type)
    (blobs / desc.digest.hex).write_bytes(data)
    return desc


@dataclass(frozen=True)
class ImageInfo:
    blobs: dict[str, int]  # hex -> size: every blob of the layout
    layers: list[int]

    @property
    def total(self) -> int:
        return sum(self.blobs.values())


def image_info(layout: Path) -> ImageInfo:
    blob_dir = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest_hex = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((blob_dir / manifest_hex).read_text())
    wanted = [manifest_hex, manifest["config"]["digest"].split(":", 1)[1]]
    wanted += [layer["digest"].split(":", 1)[1] for layer in manifest["layers"]]
    return ImageInfo(
        {h: (blob_dir / h).stat().st_size for h in wanted},
        [layer["size"] for layer in manifest["layers"]],
    )


# ------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without AWS_*, FARM_* and proxies (loopback traffic only)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "FARM_")) and k.lower() not in PROXY_VARS
    }
    env.update(extra)
    return env


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, url: str):
        self.name, self.argv, self.env, self.log, self.url = name, argv, env, log, url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ping: str, timeout: float = 60) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                with opener.open(self.url + ping, timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    ).client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            proxies={},
        ),
    )


def empty_prefix(s3: Any, prefix: str) -> int:
    """Delete every key and abort every multipart upload under `prefix`; return
    how many keys there were."""
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for obj in page.get("Contents", ()):
            s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
            count += 1
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/")
    for upload in uploads.get("Uploads", ()):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    return count


def registry_config(endpoint: str, port: int, redirect: bool) -> str:
    return json.dumps(  # YAML is a superset of JSON
        {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "s3": {
                    "accesskey": ACCESS_KEY,
                    "secretkey": SECRET_KEY,
                    "region": REGION,
                    "regionendpoint": endpoint,
                    "bucket": BUCKET,
                    "rootdirectory": f"/{REGISTRY_PREFIX}",
                    "forcepathstyle": True,
                    "secure": False,
                    "v4auth": True,
                },
                "redirect": {"disable": not redirect},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": "farm-bench"},
            "health": {"storagedriver": {"enabled": False}},
        },
        indent=2,
    )


@dataclass
class Target:
    """One registry under test: its server, the bucket prefix it writes, a label."""

    label: str
    server: Server
    prefix: str
    note: str = ""


def start_targets(
    args: argparse.Namespace, work: Path, endpoint: str, farm_command: list[str]
) -> list[Target]:
    targets = []
    for workers in args.farm_workers:
        for redirect in (False, True) if args.redirect else (False,):
            port = free_port()
            label = f"farm, {workers} worker{'s' if workers > 1 else ''}"
            prefix = f"{FARM_PREFIX}-w{workers}{'-r' if redirect else ''}"
            env = clean_env(
                FARM_HOME=str(work / f"home-{prefix}"),
                FARM_STORAGE=f"s3://{BUCKET}/{prefix}",
                FARM_S3_ENDPOINT_URL=endpoint,
                FARM_S3_REGION=REGION,
                FARM_S3_PATH_STYLE="true",
                AWS_ACCESS_KEY_ID=ACCESS_KEY,
                AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                AWS_DEFAULT_REGION=REGION,
            )
            if redirect:
                env["FARM_REGISTRY_REDIRECT_MIN_SIZE"] = str(1 << 20)
                label += ", redirect"
            argv = [
                *farm_command, "serve", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--log-level", "warning",
            ]  # fmt: skip
            server = Server(label, argv, env, work / "logs" / f"{prefix}.log",
                            f"http://127.0.0.1:{port}")  # fmt: skip
            note = f"`{shlex.join(argv[len(farm_command) :])}`, FARM_STORAGE={env['FARM_STORAGE']}"
            if redirect:
                note += ", FARM_REGISTRY_REDIRECT_MIN_SIZE=1048576 (pulls go to presigned S3 URLs)"
            targets.append(Target(label, server, prefix, note))
    binary = shutil.which("docker-registry")
    if binary is None:
        C.log("docker-registry is not installed (apt-get install docker-registry): Farm only")
    else:
        for redirect in (False, True) if args.redirect else (False,):
            port = free_port()
            prefix = f"{REGISTRY_PREFIX}{'-r' if redirect else ''}"
            config = work / f"{prefix}.yml"
            config.write_text(
                registry_config(endpoint, port, redirect).replace(
                    f'"/{REGISTRY_PREFIX}"', f'"/{prefix}"'
                )
            )
            # The registry's AWS SDK refuses a custom CA bundle: no AWS_* at all.
            label = "docker-registry" + (", redirect" if redirect else "")
            server = Server(label, [binary, "serve", str(config)], clean_env(),
                            work / "logs" / f"{prefix}.log", f"http://127.0.0.1:{port}")  # fmt: skip
            note = (
                f"`docker-registry serve` (S3 driver, rootdirectory /{prefix}, default chunk "
                f"size, redirect {'on' if redirect else 'disabled'}, access log off)"
            )
            targets.append(Target(label, server, prefix, note))
    for target in targets:
        C.log(f"starting {target.label}: {target.server.url}")
        target.server.start("/v2/")
    return targets


# ------------------------------------------------------------ measurements


@dataclass
class Cell:
    times: list[float] = field(default_factory=list)
    error: str = ""
    error_tail: str = ""

    def seconds(self) -> str:
        if self.error:
            return failed_cell(self.error)
        return timing_cell(self.times, 2)

    def rate(self, total: int) -> str:
        if self.error or not self.times:
            return "-"
        return f"{total / 1e6 / statistics.median(self.times):.1f}"


@dataclass
class Row:
    target: Target
    push: Cell = field(default_factory=Cell)
    pull: Cell = field(default_factory=Cell)
    notes: list[str] = field(default_factory=list)
    # CPU seconds (user + system) of the registry's processes and of the S3 server
    cpu: dict[str, list[float]] = field(
        default_factory=lambda: {k: [] for k in ("push", "push-s3", "pull", "pull-s3")}
    )

    def cpu_note(self) -> str:
        if not self.cpu["push"]:
            return ""
        med = {k: statistics.median(v) for k, v in self.cpu.items() if v}
        parts = [f"{phase} {med[phase]:.2f} s (S3 server {med[phase + '-s3']:.2f} s)"
                 for phase in ("push", "pull") if phase in med]  # fmt: skip
        return "CPU time, median: " + ", ".join(parts)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (uvicorn's
    worker processes), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / tick
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return total


def skopeo(args: list[str], log_to: Path) -> Run:
    argv = [shutil.which("skopeo") or "skopeo", "--insecure-policy", *args]
    return run(argv, env=clean_env(), timeout=900, log_to=log_to)


def measure_once(
    row: Row,
    s3: Any,
    moto: Server,
    layout: Path,
    info: ImageInfo,
    work: Path,
    rep: int,
    keep: bool,
) -> None:
    target = row.target
    host = target.server.url.removeprefix("http://")
    safe = target.prefix
    logs = work / "logs"
    empty_prefix(s3, target.prefix)  # nothing to deduplicate against: every blob uploads
    ref = f"docker://{host}/bench/img-{rep}:1"
    C.log(f"{target.label} #{rep}: push")
    assert target.server.proc is not None and moto.proc is not None
    pids = (target.server.proc.pid, moto.proc.pid)
    cpu0 = [cpu_seconds(p) for p in pids]
    pushed = skopeo(["copy", "--dest-tls-verify=false", f"oci:{layout}:1", ref],
                    logs / f"{safe}-push-{rep}.log")  # fmt: skip
    if not pushed.ok:
        row.push.error, row.push.error_tail = pushed.short_error(), pushed.tail()
        C.log(f"  FAIL after {pushed.seconds:.1f}s: {row.push.error}")
        return
    row.push.times.append(pushed.seconds)
    cpu1 = [cpu_seconds(p) for p in pids]
    row.cpu["push"].append(cpu1[0] - cpu0[0])
    row.cpu["push-s3"].append(cpu1[1] - cpu0[1])
    C.log(f"  {pushed.seconds:.2f}s, {info.total / 1e6 / pushed.seconds:.1f} MB/s")
    stored = stored_bytes(s3, target.prefix)
    if rep == 1:
        row.notes.append(f"bucket after push: {stored / 1e6:.1f} MB under /{target.prefix}")

    out = work / "pull" / f"{safe}-{rep}"
    wipe(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    C.log(f"{target.label} #{rep}: pull")
    cpu1 = [cpu_seconds(p) for p in pids]
    pulled = skopeo(["copy", "--src-tls-verify=false", ref, f"oci:{out}:1"],
                    logs / f"{safe}-pull-{rep}.log")  # fmt: skip
    if not pulled.ok:
        row.pull.error, row.pull.error_tail = pulled.short_error(), pulled.tail()
        C.log(f"  FAIL after {pulled.seconds:.1f}s: {row.pull.error}")
        return
    got = {p.name: p.stat().st_size for p in (out / "blobs" / "sha256").iterdir()}
    if got != info.blobs:  # skopeo checked the digests; check that it got them all
        row.pull.error = f"pulled blobs differ: {sorted(set(got) ^ set(info.blobs))[:3]}"
        return
    row.pull.times.append(pulled.seconds)
    cpu2 = [cpu_seconds(p) for p in pids]
    row.cpu["pull"].append(cpu2[0] - cpu1[0])
    row.cpu["pull-s3"].append(cpu2[1] - cpu1[1])
    C.log(f"  {pulled.seconds:.2f}s, {info.total / 1e6 / pulled.seconds:.1f} MB/s")
    if not keep:
        wipe(out)


def stored_bytes(s3: Any, prefix: str) -> int:
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        total += sum(o["Size"] for o in page.get("Contents", ()))
    return total


def s3_baseline(s3: Any, size_mb: int = 50) -> tuple[float, float]:
    """MB/s of one boto3 upload_file-style multipart PUT and one GET of `size_mb` MB
    to the same S3 server (what the server itself manages, one client)."""
    data = random.Random(1).randbytes(size_mb * 1_000_000)
    key = "baseline/blob"
    part = 8 << 20
    started = time.monotonic()
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    parts = []
    for number, offset in enumerate(range(0, len(data), part), 1):
        r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
                           PartNumber=number, Body=data[offset : offset + part])  # fmt: skip
        parts.append({"ETag": r["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})  # fmt: skip
    put = len(data) / 1e6 / (time.monotonic() - started)
    started = time.monotonic()
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    while body.read(1 << 20):
        pass
    get = len(data) / 1e6 / (time.monotonic() - started)
    s3.delete_object(Bucket=BUCKET, Key=key)
    return put, get


# ------------------------------------------------------------ report


def environment(farm_command: list[str]) -> list[str]:
    def out(argv: list[str]) -> str:
        r = run(argv, timeout=30, cwd=REPO)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if r.ok else "?"

    head = out(["git", "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO).stdout.strip()
    try:
        from importlib.metadata import version

        versions = ", ".join(f"{p} {version(p)}" for p in ("moto", "boto3", "uvicorn"))
    except Exception:
        versions = "?"
    return [
        machine(f"Python {platform.python_version()}"),
        f"- Farm: `{shlex.join(farm_command)} serve` at {head}"
        + (" with uncommitted changes" if dirty else ""),
        f"- {out(['skopeo', '--version'])}; {out(['docker-registry', '--version'])}",
        f"- S3: moto server mode on 127.0.0.1 (one bucket for all); {versions}",
    ]


def render(rows: list[Row], header: list[str], footer: list[str], info: ImageInfo,
           repeat: int) -> str:  # fmt: skip
    layers = ", ".join(f"{s / 1e6:.0f}" for s in info.layers)
    out = [
        f"## Registry push/pull: skopeo, {info.total / 1e6:.0f} MB image over one S3 server",
        "",
        *header,
        f"- image: {len(info.layers)} gzip layers of {layers} MB + config + manifest = "
        f"{info.total / 1e6:.1f} MB; MB/s = that / seconds (1 MB = 10^6 bytes)",
        "",
    ]
    if repeat > 1:
        out += [f"Seconds are the median of {repeat} runs (min-max); MB/s from the median.", ""]
    out += [
        "| tool | push s | push MB/s | pull s | pull MB/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        out.append(
            f"| {r.target.label} | {r.push.seconds()} | {r.push.rate(info.total)} | "
            f"{r.pull.seconds()} | {r.pull.rate(info.total)} |"
        )
    out += ["", "Notes:", ""]
    for r in rows:
        notes = [r.target.note, *r.notes, r.cpu_note()]
        out.append(f"- {r.target.label}: " + "; ".join(n for n in notes if n))
    failures = [(f"{r.target.label} / {name}", c.error_tail)
                for r in rows for name, c in (("push", r.push), ("pull", r.pull))
                if c.error_tail]  # fmt: skip
    return markdown([*out, "", *footer], failures)


# ------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per registry (median)")
    parser.add_argument("--size-mb", type=int, default=200,
                        help="compressed image size, MB (default %(default)s)")  # fmt: skip
    parser.add_argument("--output-md", type=Path, help="also write the markdown report here")
    parser.add_argument(
        "--workdir", type=Path, default=C.CACHE / "registry-run",
        help="server homes, pulled images, logs (default: %(default)s; wiped at start)",
    )  # fmt: skip
    parser.add_argument(
        "--farm", default=str(REPO / ".venv" / "bin" / "farm"),
        help="the farm command (split like a shell would; default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--farm-workers", default="1",
        help="comma-separated `farm serve --workers` values, one row each (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--redirect", action="store_true",
        help="also measure each registry with pulls redirected to presigned S3 URLs",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the pulled OCI directories")
    args = parser.parse_args(argv)
    try:
        args.farm_workers = [int(w) for w in args.farm_workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--farm-workers: comma-separated integers")
    if shutil.which("skopeo") is None:
        parser.error("skopeo is not installed (apt-get install skopeo)")
    if importlib.util.find_spec("moto") is None:
        parser.error("moto's server mode is not installed: pip install 'moto[server]'")

    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()[0]
    layout = image_layout(args.size_mb)
    info = image_info(layout)
    work: Path = args.workdir
    wipe(work)
    (work / "logs").mkdir(parents=True)
    farm_command = shlex.split(args.farm)

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = Server("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                  clean_env(), work / "logs" / "moto.log", endpoint)  # fmt: skip
    targets: list[Target] = []
    rows: list[Row] = []
    footer: list[str] = []
    try:
        moto.start("/")
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        put, get = s3_baseline(s3)
        footer.append(
            f"- S3 server alone (boto3, one client, 50 MB in 8 MiB parts): "
            f"PUT {put:.0f} MB/s, GET {get:.0f} MB/s"
        )
        C.log(footer[-1].lstrip("- "))
        targets = start_targets(args, work, endpoint, farm_command)
        rows = [Row(t) for t in targets]
        for rep in range(1, args.repeat + 1):  # interleaved: noise spreads over all rows
            for row in rows:
                measure_once(row, s3, moto, layout, info, work, rep, args.keep)
            print(render(rows, [], [], info, args.repeat), file=sys.stderr)  # progress
    finally:
        for target in targets:
            target.server.stop()
        moto.stop()

    header = environment(farm_command)
    header.append(
        f"- started {started}; registries one after the other, interleaved per repeat; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    footer.append(
        "- every push goes to a new repository after the registry's prefix in the bucket "
        "was emptied: all blobs travel client -> registry -> S3; every pull goes to a new "
        "OCI directory"
    )
    report = render(rows, header, footer, info, args.repeat)
    print(report)
    if args.output_md:
        args.output_md.write_text(report)
    if not args.keep:
        wipe(work / "pull")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
