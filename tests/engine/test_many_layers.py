"""Many layers: the RUN sandbox's overlay mount options hold one page of lower
dirs; past that the engine unpacks the bottom layers into one snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import BASE, build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(90)]


@pytest.mark.slow
def test_a_long_chain_of_run_layers(tmp_path: Path) -> None:
    # A long FARM_HOME makes every snapshot path long, so few layers fill the page.
    home = tmp_path / ("h" * 120) / ("o" * 120)
    home.mkdir(parents=True)
    steps = ["RUN echo gone > /gone && mkdir /d && touch /d/old"]
    steps += [f"RUN echo {i} > /f{i}" for i in range(20)]
    steps += ["RUN rm /gone && rm -r /d && mkdir /d && touch /d/new"]
    steps += [f"RUN echo {i} > /g{i}" for i in range(6)]
    steps += ["RUN cat /f* /g* | wc -l > /count && test ! -e /gone && ls /d > /dls"]
    built = build(tmp_path, BASE + "\n".join(steps) + "\n", home=home)
    assert len(built.layer_digests()) == 1 + len(steps)
    root = built.rootfs(tmp_path / "root")
    assert (root / "count").read_text().strip() == "26"
    assert (root / "dls").read_text() == "new\n"
    assert not (root / "gone").exists()
