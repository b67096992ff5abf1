"""`--cache-to` and `--cache-from`, as buildx reads them.

    type=local,dest=DIR[,mode=min|max][,ignore-error=true]     --cache-to
    type=local,src=DIR[,ignore-error=true]                     --cache-from
    type=registry,ref=REF[,mode=min|max][,ignore-error=true]   either
    REF                                                        type=registry,ref=REF

A registry REF may name a tag (`reg:5000/app:buildcache`; `latest` when it
names none) or a digest (`reg:5000/app@sha256:…`). buildx's
`image-manifest` and `oci-mediatypes` are accepted for type=registry and
change nothing: Farm always writes one OCI image manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

from buildkit.cache.artifact import CacheError
from buildkit.errors import ReferenceFormatError
from buildkit.reference import parse_reference

__all__ = ["CacheOption", "parse_cache_option"]

_UNSUPPORTED = ("inline", "gha", "s3", "azblob")
_TRUE = ("true", "1")
_BOOLEAN = (*_TRUE, "false", "0")
_IGNORED_REGISTRY_OPTIONS = ("image-manifest", "oci-mediatypes")


@dataclass(frozen=True)
class CacheOption:
    type: str  # local | registry
    dest: str = ""  # local --cache-to
    src: str = ""  # local --cache-from
    mode: str = "min"  # min: the result's layers; max: every step's
    ignore_error: bool = False
    ref: str = ""  # registry

    @property
    def where(self) -> str:
        """The directory or reference, for messages."""
        return self.ref or self.dest or self.src


def parse_cache_option(text: str, *, flag: str = "") -> CacheOption:
    """`type=local,dest=DIR,mode=max` or `type=registry,ref=REF` (or a bare
    REF). `flag` (`--cache-to` or `--cache-from`) says which local path is
    required; without it, one of `dest` and `src` is."""
    name = flag or "cache option"
    if "=" not in text:  # buildx: a bare reference is a registry cache
        fields = {"type": "registry", "ref": text.strip()}
    else:
        fields = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise CacheError(f"invalid {name} {text!r}: {part!r} is not key=value")
            fields[key.strip().lower()] = value.strip()
    kind = fields.pop("type", "")
    if kind in _UNSUPPORTED:
        raise CacheError(
            f"{name} type={kind} is not supported by Farm: use type=local or type=registry"
        )
    if kind not in ("local", "registry"):
        raise CacheError(f"invalid {name} {text!r}: type must be local or registry (got {kind!r})")
    paths = {"dest": "", "src": ""} if kind == "local" else {"ref": ""}
    for key in paths:
        paths[key] = fields.pop(key, "")
    ignore_error = fields.pop("ignore-error", "false").lower()
    if ignore_error not in _BOOLEAN:
        raise CacheError(f"invalid {name} ignore-error {ignore_error!r}: true or false")
    if kind == "registry":
        for key in _IGNORED_REGISTRY_OPTIONS:
            fields.pop(key, None)
    opt = CacheOption(
        type=kind, mode=fields.pop("mode", "min"), ignore_error=ignore_error in _TRUE, **paths
    )
    if opt.mode not in ("min", "max"):
        raise CacheError(f"invalid {name} mode {opt.mode!r}: min or max")
    if fields:
        raise CacheError(f"unknown {name} options: {', '.join(sorted(fields))}")
    if kind == "registry":
        _check_ref(opt.ref, name)
        return opt
    wanted = {"--cache-to": ("dest",), "--cache-from": ("src",)}.get(flag, ("dest", "src"))
    if not any(getattr(opt, w) for w in wanted):
        raise CacheError(f"{name} type=local needs {' or '.join(w + '=DIR' for w in wanted)}")
    return opt


def _check_ref(ref: str, name: str) -> None:
    if not ref:
        raise CacheError(f"{name} type=registry needs ref=REF (e.g. ghcr.io/o/app:buildcache)")
    try:
        parse_reference(ref)
    except ReferenceFormatError as exc:
        raise CacheError(f"invalid {name} ref {ref!r}: {exc}") from None
