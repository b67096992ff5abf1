"""Images with many layers: up to MAX_LOWERS snapshots stack in one overlay
mount as they are; past it the bottom ones are flattened into one snapshot for
RUN and COPY. Either way the image keeps every layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildkit.executor import MAX_LOWERS
from tests.engine.conftest import BASE, build

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize(("count", "flattened"), [(MAX_LOWERS - 8, False), (MAX_LOWERS + 12, True)])
def test_many_layers(tmp_path: Path, count: int, flattened: bool) -> None:
    lines = "".join(f"COPY f{i} /layers/f{i}\n" for i in range(count))
    dockerfile = BASE + lines + "RUN ls /layers | wc -l > /count\nCOPY f0 /again\n"
    files = {f"f{i}": f"{i}\n" for i in range(count)}
    built = build(tmp_path, dockerfile, files)
    root = built.rootfs(tmp_path / "root")
    assert (root / "count").read_text().strip() == str(count)  # RUN saw every layer
    assert (root / "again").read_text() == "0\n"
    assert len(built.layer_digests()) == 1 + count + 2
    chains = list((tmp_path / "farm-home" / "snapshots").glob("chain-*"))
    assert bool(chains) == flattened
