"""What writing and applying a layer share: the compressions with their media
types and levels, the xattrs a written layer keeps by default, the names of
deletions (OCI's `.wh.` entries and overlayfs' own xattrs), and `Layer`, the
record of a written blob. No I/O here; `layers.py` writes layers,
`layerapply.py` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from buildkit.digest import Digest
from buildkit.image import OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, Descriptor

Compression = Literal["gzip", "zstd", "none"]
MEDIA_TYPES: dict[str, str] = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER}
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
DEFAULT_XATTRS = ("security.capability",)
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


@dataclass(frozen=True)
class Layer:
    """A written layer blob: `digest`/`size` of the blob, `diff_id` of the tar."""

    digest: Digest
    diff_id: Digest
    size: int
    media_type: str
    uncompressed_size: int

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)
