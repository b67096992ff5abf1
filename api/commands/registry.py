"""`farm pull`, `farm push` and `farm inspect`: images of other registries.

Credentials come from Docker's config file (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`: `docker login` writes it), read here, at the edge;
`--insecure-registry HOST` speaks plain HTTP to HOST (loopback registries
always are).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from buildkit.registry.client import RegistryClient, RegistryConfig
    from buildkit.store.base import Store


def insecure_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--insecure-registry",
        "insecure_registries",
        multiple=True,
        metavar="HOST[:PORT]",
        help="Use plain HTTP for this registry (repeatable; loopback registries always do).",
    )(fn)


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def registry_config(insecure: tuple[str, ...] = ()) -> RegistryConfig:
    """What the engine needs to reach registries, from the user's environment."""
    from buildkit.registry.client import RegistryConfig
    from buildkit.registry.credentials import load_docker_config

    def warn(text: str) -> None:
        click.echo(text, err=True)

    creds = load_docker_config(docker_config_path(), warn)
    # The CLI is an edge: httpx may read HTTPS_PROXY, NO_PROXY and SSL_CERT_FILE.
    return RegistryConfig(credentials=creds, insecure=frozenset(insecure), trust_env=True)


def _client(insecure: tuple[str, ...]) -> RegistryClient:
    from buildkit.registry.client import RegistryClient

    return RegistryClient(registry_config(insecure))


def _store() -> Store:
    from workers.embedded import open_store
    from workers.settings import get_settings

    return open_store(get_settings())


@click.command()
@click.argument("ref")
@click.option("--platform", default="", help="Which platform to pull (default: this host's).")
@insecure_option
def pull(ref: str, platform: str, insecure_registries: tuple[str, ...]) -> None:
    """Pull REF into the local store (as a base image for builds, not a repository)."""
    from buildkit.platforms import host_platform, parse_platform
    from buildkit.reference import parse_reference
    from buildkit.registry.pull import pull_image

    plat = parse_platform(platform) if platform else host_platform()
    parsed = parse_reference(ref).with_default_tag()
    with _client(insecure_registries) as client:
        image = pull_image(
            client,
            parsed,
            plat,
            _store(),
            refresh=True,
            progress=lambda text: click.echo(text, err=True),
        )
    click.echo(f"{parsed}: pulled {plat} {image.manifest_descriptor.digest}", err=True)
    click.echo(image.manifest_descriptor.digest)


@click.command()
@click.argument("name")
@click.argument("dest_ref")
@insecure_option
def push(name: str, dest_ref: str, insecure_registries: tuple[str, ...]) -> None:
    """Push NAME[:TAG] of the local store to DEST_REF (e.g. ghcr.io/o/app:1)."""
    from buildkit.image import INDEX_TYPES, parse_index
    from buildkit.images import split_tag
    from buildkit.registry.push import push_image
    from buildkit.store.base import read_blob

    store = _store()
    repo, tag = split_tag(name)
    top = store.resolve(repo, tag)
    children = (
        parse_index(read_blob(store, top.digest)).manifests if top.media_type in INDEX_TYPES else ()
    )
    with _client(insecure_registries) as client:
        report = push_image(
            client, store, top, children, dest_ref, progress=lambda t: click.echo(t, err=True)
        )
    click.echo(
        f"{report.reference}: {report.count('uploaded')} uploaded, {report.count('mounted')} "
        f"mounted, {report.count('exists')} already there",
        err=True,
    )
    click.echo(report.digest)


@click.command()
@click.argument("ref")
@click.option("--raw", is_flag=True, help="Print the manifest (or index) bytes as they are.")
@insecure_option
def inspect(ref: str, raw: bool, insecure_registries: tuple[str, ...]) -> None:
    """Show REF's manifest: from the local store (repositories, then pulled
    bases) for names of Farm's store, from the registry otherwise."""
    from buildkit.reference import parse_reference
    from buildkit.registry.names import names_other_registry

    parsed = parse_reference(ref).with_default_tag()
    found = None if names_other_registry(parsed) else _local_manifest(parsed)
    if found is not None:
        _show(parsed, *found, raw=raw)
        return
    with _client(insecure_registries) as client:
        got = client.get_manifest(parsed)
        _show(parsed, got.data, got.media_type, got.digest, _remote_reader(client, parsed), raw=raw)


def _show(parsed, data: bytes, media_type: str, digest: str, read, *, raw: bool) -> None:  # type: ignore[no-untyped-def]
    if raw:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    click.echo(json.dumps(_summary(parsed, data, media_type, digest, read), indent=2))


def _local_manifest(parsed):  # type: ignore[no-untyped-def]
    """(bytes, media type, digest, blob reader) of a repository tag or a pulled base."""
    from buildkit.errors import ManifestUnknown, ReferenceFormatError
    from buildkit.images import local_repository, read_base_record
    from buildkit.store.base import NameUnknown, read_blob

    store = _store()

    def read(digest: str) -> bytes:
        return read_blob(store, digest)  # type: ignore[arg-type]

    try:
        desc = store.resolve(local_repository(parsed), parsed.digest or parsed.tag)
        return read(desc.digest), desc.media_type, desc.digest, read
    except (NameUnknown, ManifestUnknown, ReferenceFormatError):
        pass
    record = read_base_record(store, str(parsed))
    if record is None:
        return None
    return read(record["digest"]), record["mediaType"], record["digest"], read


def _remote_reader(client, parsed):  # type: ignore[no-untyped-def]
    from buildkit.reference import Reference

    def read(digest: str) -> bytes:
        with client.open_blob(Reference(parsed.domain, parsed.path), digest) as blob:
            return blob.read()

    return read


def _summary(parsed, data: bytes, media_type: str, digest: str, read) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """As `skopeo inspect` shows an image: name, digest, platforms or layers."""
    from buildkit.image import Index, parse_config, parse_manifest_or_index

    doc = parse_manifest_or_index(data, media_type)
    out: dict[str, Any] = {"Name": parsed.name, "Tag": parsed.tag, "Digest": digest,
                           "MediaType": media_type}  # fmt: skip
    if isinstance(doc, Index):
        out["Manifests"] = [
            {
                "Digest": d.digest,
                "MediaType": d.media_type,
                "Size": d.size,
                "Platform": str(d.platform) if d.platform else "",
            }
            for d in doc.manifests
        ]
        return out
    config = parse_config(read(doc.config.digest))
    out.update(
        {
            "Created": config.created,
            "Architecture": config.architecture,
            "Os": config.os,
            "Variant": config.variant,
            "Config": doc.config.digest,
            "Layers": [d.digest for d in doc.layers],
            "Env": list(config.config.env),
            "Cmd": list(config.config.cmd or ()),
        }
    )
    return out
