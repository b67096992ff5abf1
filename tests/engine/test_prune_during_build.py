"""A prune in a shared store while a build runs loses the build nothing: a layer
blob that vanishes before the manifest is written is written again."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildkit.events import Event, Recorder
from buildkit.store.filesystem import FilesystemStore
from tests.engine.conftest import build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(90)]

DOCKERFILE = """\
FROM scratch
ADD rootfs-amd64.tar /
RUN echo payload > /payload
CMD ["cat", "/payload"]
"""


class DeleteBlobsOnLastStep(Recorder):
    """Removes every layer blob from the store as the last step starts, as a
    prune with a zero grace period in a shared store could."""

    def __init__(self, store_root: Path) -> None:
        super().__init__()
        self.store_root = store_root
        self.deleted: list[str] = []

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        if event.kind == "step.start" and event.name.startswith("CMD"):
            store = FilesystemStore(self.store_root)
            for digest in store.list_blobs():
                if store.delete_blob(digest):
                    self.deleted.append(digest)


def test_vanished_layers_are_rewritten_before_the_manifest(tmp_path: Path) -> None:
    home = tmp_path / "farm-home"
    recorder = DeleteBlobsOnLastStep(home / "registry")
    built = build(tmp_path, DOCKERFILE, tags=("kept:1",), recorder=recorder)
    assert recorder.deleted, "the test deleted nothing"
    store = built.store
    manifest = built.manifest()
    for layer in manifest["layers"]:
        assert store.has_blob(layer["digest"]), layer["digest"]
    assert store.has_blob(manifest["config"]["digest"])
