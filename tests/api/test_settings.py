"""Settings read from the environment: FARM_HOME is made canonical (mount
bookkeeping compares against the kernel's real paths), empty means default."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.settings import Settings


def test_home_is_canonical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    for given in ("link", str(tmp_path / "link"), str(tmp_path / "real" / ".." / "link")):
        monkeypatch.setenv("FARM_HOME", given)
        assert Settings().home == (tmp_path / "real").resolve()


def test_empty_uploads_dir_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_REGISTRY_UPLOADS", "")
    assert Settings().registry_uploads is None
