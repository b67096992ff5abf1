"""Same inputs, same digests; SOURCE_DATE_EPOCH sets `created` and clamps mtimes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.engine.conftest import AMD64, ARM64, BASE, build, need_arm64

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(90)]

DOCKERFILE = (
    BASE
    + "COPY files/ /files/\n"
    + "RUN mkdir -p /made/sub && "
    + "echo made > /made/sub/f && ln -s sub/f /made/link && touch /made/empty\n"
    + "COPY Dockerfile /made/\n"
)


def _clone(tmp_path: Path, name: str, mtime: int) -> Path:
    ctx = tmp_path / name
    (ctx / "files/deep").mkdir(parents=True)
    (ctx / "files/a").write_text("a\n")
    (ctx / "files/deep/b").write_text("b\n")
    for path in (ctx / "files/a", ctx / "files/deep/b", ctx / "files/deep", ctx / "files"):
        os.utime(path, (mtime, mtime))
    return ctx


def test_two_clones_two_homes_same_digests(tmp_path: Path) -> None:
    need_arm64()
    platforms = [AMD64, ARM64]
    _clone(tmp_path, "one", 1_000_000_000)
    first = build(
        tmp_path, DOCKERFILE, platforms=platforms, home=tmp_path / "home-one", context_name="one"
    )
    time.sleep(1.1)  # the RUN step's files get other mtimes
    _clone(tmp_path, "two", 1_600_000_000)
    second = build(
        tmp_path, DOCKERFILE, platforms=platforms, home=tmp_path / "home-two", context_name="two"
    )
    assert first.digest == second.digest
    for platform in platforms:
        assert first.manifest_digest(platform) == second.manifest_digest(platform)
        assert first.layer_digests(platform) == second.layer_digests(platform)
        assert first.config(platform) == second.config(platform)
    assert first.config(AMD64)["created"] == "1970-01-01T00:00:00Z"


def test_source_date_epoch_sets_created_and_clamps_mtimes(tmp_path: Path) -> None:
    epoch = 1_700_000_000
    ctx = _clone(tmp_path, "context", epoch - 1000)
    os.utime(ctx / "files/deep/b", (epoch + 5000, epoch + 5000))  # from the future
    built = build(tmp_path, DOCKERFILE, source_date_epoch=str(epoch))
    config = built.config()
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert {h["created"] for h in config["history"]} == {"2023-11-14T22:13:20Z"}
    copied = built.layer_members(1)
    assert copied["files/a"].mtime == epoch - 1000  # older than the epoch: kept
    assert copied["files/deep/b"].mtime == epoch  # newer: clamped
    run = built.layer_members(2)
    assert run["made/sub/f"].mtime == epoch
    assert all(m.mtime <= epoch for i in range(3) for m in built.layer_members(i).values())


def test_source_date_epoch_build_arg(tmp_path: Path) -> None:
    built = build(tmp_path, BASE + "RUN touch /x\n", build_args={"SOURCE_DATE_EPOCH": "86400"})
    assert built.config()["created"] == "1970-01-02T00:00:00Z"
    assert built.layer_members(-1)["x"].mtime == 86400


def test_epoch_now_keeps_real_times(tmp_path: Path) -> None:
    before = int(time.time())
    built = build(tmp_path, BASE + "RUN touch /x\n", source_date_epoch="now")
    after = int(time.time()) + 1
    created = built.config()["created"]
    when = int(time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))) - time.timezone
    assert before <= when <= after, created
    assert before <= built.layer_members(-1)["x"].mtime <= after


def test_different_content_different_digest(tmp_path: Path) -> None:
    one = build(tmp_path, BASE + "RUN echo 1 > /x\n", context_name="one")
    two = build(tmp_path, BASE + "RUN echo 2 > /x\n", context_name="two")
    assert one.layer_digests()[:-1] == two.layer_digests()[:-1]
    assert one.layer_digests()[-1] != two.layer_digests()[-1]
    assert one.digest != two.digest
