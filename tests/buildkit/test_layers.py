"""Layer blobs: deterministic tars from trees and overlay upper dirs, one-pass
digests, and safe application (whiteouts, opaque dirs, malicious archives)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from buildkit.errors import StorageError
from buildkit.layers import InvalidLayer, Layer, apply_layer, diff_upperdir, tar_directory

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chown, mknod, trusted xattrs)")
EPOCH = 1_700_000_000
CAP_NET_BIND = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # vfs_cap_data v2


def build(root: Path, fn=tar_directory, **kwargs) -> tuple[Layer, bytes]:
    out = io.BytesIO()
    layer = fn(root, out, **kwargs)
    return layer, out.getvalue()


def plain_tar(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
    return blob


def members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(plain_tar(blob))) as tf:
        return tf.getmembers()


def names(blob: bytes) -> list[str]:
    return [m.name for m in members(blob)]


def make_tree(root: Path, mtime: int) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("farm\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
    os.chmod(root / "bin" / "tool", 0o4755)
    os.symlink("../etc/hostname", root / "bin" / "link")
    (root / "empty").mkdir()
    for path in [*root.rglob("*"), root]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


# ------------------------------------------------------------ writing


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_one_pass_digests_match_hashlib(tmp_path, compression):
    layer, blob = build(make_tree(tmp_path / "t", EPOCH), compression=compression)
    tar = plain_tar(blob)
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert layer.size == len(blob)
    assert layer.uncompressed_size == len(tar)
    assert layer.media_type.endswith(
        {"gzip": "+gzip", "zstd": "+zstd", "none": ".tar"}[compression]
    )
    assert layer.descriptor().digest == layer.digest
    if compression == "none":
        assert layer.digest == layer.diff_id
    else:
        assert len(blob) < len(tar)


def test_gzip_header_is_fixed_and_stream_valid(tmp_path):
    _, blob = build(make_tree(tmp_path / "t", EPOCH), compression="gzip")
    # magic, deflate, no flags (no name), mtime 0, xfl 0, OS unknown
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    subprocess.run(["gzip", "-t"], input=blob, check=True)


def test_same_tree_different_mtimes_same_digests_with_epoch(tmp_path):
    a, blob_a = build(make_tree(tmp_path / "a", EPOCH + 10), source_date_epoch=EPOCH)
    b, blob_b = build(make_tree(tmp_path / "b", EPOCH + 99999), source_date_epoch=EPOCH)
    assert (a.digest, a.diff_id) == (b.digest, b.diff_id)
    assert blob_a == blob_b
    za, _ = build(tmp_path / "a", compression="zstd", source_date_epoch=EPOCH)
    zb, _ = build(tmp_path / "b", compression="zstd", source_date_epoch=EPOCH)
    assert za.digest == zb.digest
    # Without the epoch the mtimes are kept, so the digests differ.
    assert build(tmp_path / "a")[0].diff_id != build(tmp_path / "b")[0].diff_id


def test_mtimes_clamped_not_raised(tmp_path):
    root = make_tree(tmp_path / "t", EPOCH + 500)
    os.utime(root / "etc" / "hostname", (1000, 1000))
    _, blob = build(root, source_date_epoch=EPOCH)
    times = {m.name: m.mtime for m in members(blob)}
    assert times["etc/hostname"] == 1000
    assert times["bin/tool"] == EPOCH


def test_entries_sorted_directory_before_contents(tmp_path):
    root = tmp_path / "t"
    for d in ["a", "a/z", "b"]:
        (root / d).mkdir(parents=True)
    for f in ["a-c", "a.b", "a/y", "a/z/1", "B", "b/x"]:
        (root / f).write_text(f)
    _, blob = build(root)
    assert names(blob) == ["B", "a", "a/y", "a/z", "a/z/1", "a-c", "a.b", "b", "b/x"]


@needs_root
def test_headers_numeric_owners_no_names_ustar_only_when_possible(tmp_path):
    root = make_tree(tmp_path / "t", EPOCH)
    os.chown(root / "etc" / "hostname", 1234, 5678)
    _, blob = build(root, compression="none")
    by_name = {m.name: m for m in members(blob)}
    assert (by_name["etc/hostname"].uid, by_name["etc/hostname"].gid) == (1234, 5678)
    assert all(m.uname == "" and m.gname == "" for m in by_name.values())
    assert stat.S_IMODE(by_name["bin/tool"].mode) == 0o4755
    assert by_name["bin/link"].issym() and by_name["bin/link"].linkname == "../etc/hostname"
    assert by_name["empty"].isdir()
    assert all(not m.pax_headers for m in by_name.values())
    assert b"PaxHeader" not in blob
    assert blob.endswith(b"\0" * 1024) and len(blob) % 512 == 0


@needs_root
def test_pax_headers_for_long_names_big_ids_and_capabilities(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    long = "d" * 120
    (root / long).write_text("x")
    (root / "big").write_text("x")
    os.chown(root / "big", 3_000_000, 4_000_000)
    (root / "cap").write_text("x")
    os.setxattr(root / "cap", "security.capability", CAP_NET_BIND)
    os.setxattr(root / "cap", "user.note", b"not kept by default")
    by_name = {m.name: m for m in members(build(root)[1])}
    assert by_name[long].pax_headers["path"] == long
    assert (by_name["big"].uid, by_name["big"].gid) == (3_000_000, 4_000_000)
    cap = by_name["cap"].pax_headers
    assert cap["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == (
        CAP_NET_BIND
    )
    assert "SCHILY.xattr.user.note" not in cap
    kept = {m.name: m for m in members(build(root, xattrs=("user.",))[1])}
    assert kept["cap"].pax_headers == {"SCHILY.xattr.user.note": "not kept by default"}


@needs_root
def test_hardlinks_devices_fifos_and_sockets(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "a").write_text("shared")
    os.link(root / "a", root / "z")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "zero0", stat.S_IFCHR | 0o600, 0)  # a plain tree: not a whiteout
    os.mknod(root / "loop", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mkfifo(root / "fifo")
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    by_name = {m.name: m for m in members(build(root)[1])}
    assert sorted(by_name) == ["a", "fifo", "loop", "null", "z", "zero0"]
    assert by_name["a"].isreg() and by_name["a"].size == 6
    assert by_name["z"].islnk() and by_name["z"].linkname == "a" and by_name["z"].size == 0
    assert by_name["null"].ischr() and (by_name["null"].devmajor, by_name["null"].devminor) == (
        1,
        3,
    )
    assert by_name["zero0"].ischr()
    assert by_name["loop"].isblk() and by_name["loop"].devmajor == 7
    assert by_name["fifo"].isfifo()


def synthetic_upper(upper: Path) -> Path:
    """An upper dir as overlayfs leaves it: a deletion and an opaque directory."""
    upper.mkdir()
    os.mknod(upper / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (upper / "opq").mkdir()
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    (upper / "opq" / "new").write_text("new")
    (upper / "kept").mkdir()
    os.mknod(upper / "kept" / "old", stat.S_IFCHR, 0)
    return upper


@needs_root
def test_diff_upperdir_whiteouts_and_opaque_dirs_synthetic(tmp_path):
    _, blob = build(synthetic_upper(tmp_path / "upper"), diff_upperdir, source_date_epoch=0)
    ms = members(blob)
    assert [m.name for m in ms] == [
        ".wh.gone",
        "kept",
        "kept/.wh.old",
        "opq",
        "opq/.wh..wh..opq",
        "opq/new",
    ]
    by_name = {m.name: m for m in ms}
    for marker in (".wh.gone", "kept/.wh.old", "opq/.wh..wh..opq"):
        assert by_name[marker].isreg() and by_name[marker].size == 0
    assert not any(k.startswith("SCHILY.xattr.trusted") for m in ms for k in m.pax_headers)
    # The same tree read as a plain directory keeps the devices as devices.
    _, plain = build(tmp_path / "upper", tar_directory)
    assert "gone" in names(plain) and not any(".wh." in n for n in names(plain))


@needs_root
def test_diff_upperdir_refuses_metacopy(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_text("")
    os.setxattr(upper / "f", "trusted.overlay.metacopy", b"")
    with pytest.raises(StorageError, match="metacopy"):
        build(upper, diff_upperdir)


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything apply_layer must preserve, per path."""
    seen = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        rel = path.relative_to(root).as_posix()
        xattrs = {
            n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)
        }
        content = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        mtime = None if stat.S_ISLNK(st.st_mode) else st.st_mtime_ns
        seen[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev, mtime, content, link, xattrs)
    return seen


@needs_root
@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_apply_layer_round_trip(tmp_path, compression):
    root = make_tree(tmp_path / "src", EPOCH)
    os.chown(root / "etc" / "hostname", 1000, 1001)
    os.chown(root / "bin" / "link", 7, 8, follow_symlinks=False)
    os.link(root / "bin" / "tool", root / "bin" / "tool2")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(root / "fifo", 0o640)
    os.setxattr(root / "bin" / "tool", "security.capability", CAP_NET_BIND)
    os.chmod(root / "empty", 0o1777)
    for path in [*root.rglob("*"), root]:
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
    _, blob = build(root, compression=compression)
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(blob), dest)
    assert snapshot(dest) == snapshot(root)
    assert os.stat(dest / "bin" / "tool").st_ino == os.stat(dest / "bin" / "tool2").st_ino


@needs_root
def test_apply_whiteouts_and_opaque_directories(tmp_path):
    base = tmp_path / "base"
    (base / "opq" / "sub").mkdir(parents=True)
    (base / "opq" / "old").write_text("old")
    (base / "opq" / "sub" / "deep").write_text("deep")
    (base / "gone").write_text("bye")
    (base / "kept").mkdir()
    (base / "kept" / "old").write_text("old")
    (base / "kept" / "stay").write_text("stay")
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(build(base)[1]), dest)
    apply_layer(io.BytesIO(build(synthetic_upper(tmp_path / "upper"), diff_upperdir)[1]), dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "kept",
        "kept/stay",
        "opq",
        "opq/new",
    ]


def _overlay_available(tmp: Path) -> bool:
    for d in "luwm":
        (tmp / d).mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={tmp / 'l'},upperdir={tmp / 'u'},workdir={tmp / 'w'}"
    ok = (
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(tmp / "m")], capture_output=True
        ).returncode
        == 0
    )
    if ok:
        subprocess.run(["umount", str(tmp / "m")], check=True)
    return ok


@pytest.mark.sandbox
@needs_root
def test_real_overlay_upperdir_round_trip(tmp_path):
    if not _overlay_available(tmp_path / "probe"):
        pytest.skip("cannot mount overlayfs here")
    lower, upper, work, merged = (tmp_path / d for d in ("lower", "upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    (lower / "dir" / "sub").mkdir(parents=True)
    (lower / "dir" / "a").write_text("a")
    (lower / "dir" / "sub" / "b").write_text("b")
    (lower / "file").write_text("file")
    (lower / "keep").write_text("keep")
    opts = (
        f"lowerdir={lower},upperdir={upper},workdir={work},index=off,metacopy=off,redirect_dir=off"
    )
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        (merged / "file").unlink()
        subprocess.run(["rm", "-rf", str(merged / "dir")], check=True)
        (merged / "dir").mkdir()
        (merged / "dir" / "fresh").write_text("fresh")
        (merged / "keep").write_text("changed")
        (merged / "added").write_text("added")
        want = snapshot(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    _, blob = build(upper, diff_upperdir)
    listed = names(blob)
    assert ".wh.file" in listed
    assert listed.index("dir") + 1 == listed.index("dir/.wh..wh..opq")
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(build(lower)[1]), dest)
    apply_layer(io.BytesIO(blob), dest)
    got = snapshot(dest)
    # Directory mtimes in the merged view come from the upper dir, like ours.
    assert {k: v[:4] + v[5:] for k, v in got.items()} == {k: v[:4] + v[5:] for k, v in want.items()}


# ------------------------------------------------------------ malicious archives


def evil_tar(*entries: tuple[str, str, bytes | str]) -> io.BytesIO:
    """(name, kind, payload): kind file / dir / sym / hard."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[
                kind
            ]
            info.linkname = str(payload)
            tf.addfile(info)
    out.seek(0)
    return out


@pytest.fixture
def jail(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    dest = tmp_path / "dest"
    dest.mkdir()
    return dest, outside


def outside_untouched(outside: Path) -> bool:
    return [p.name for p in outside.iterdir()] == ["secret"] and (
        (outside / "secret").read_text() == "secret" and os.stat(outside / "secret").st_nlink == 1
    )


@pytest.mark.parametrize(
    "entries",
    [
        [("../x", "file", "x")],
        [("a/../../x", "file", "x")],
        [("/abs", "file", "x")],
        [("h", "hard", "../outside/secret")],
        [("h", "hard", "/etc/passwd")],
        [(".wh...", "file", "")],
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "hardlink-dotdot",
        "hardlink-absolute",
        "wh-dotdot",
    ],
)
def test_malicious_paths_rejected(jail, entries):
    dest, outside = jail
    with pytest.raises(InvalidLayer):
        apply_layer(evil_tar(*entries), dest)
    assert outside_untouched(outside)
    assert not (dest.parent / "x").exists()


@pytest.mark.parametrize("target", ["OUTSIDE", "../../../../../../OUTSIDE"])
def test_symlink_then_write_through_stays_inside(jail, target):
    dest, outside = jail
    target = target.replace("OUTSIDE", str(outside).lstrip("/"))
    if not target.startswith("."):
        target = "/" + target
    apply_layer(evil_tar(("evil", "sym", target), ("evil/pwned", "file", "pwned")), dest)
    assert outside_untouched(outside)
    # Resolved as in a chroot at dest: the write lands inside dest.
    landed = dest / str(outside).lstrip("/") / "pwned"
    assert landed.read_text() == "pwned"


def test_existing_symlink_is_replaced_not_followed(jail):
    dest, outside = jail
    apply_layer(evil_tar(("s", "sym", str(outside / "secret")), ("s", "file", "mine")), dest)
    assert outside_untouched(outside)
    assert not (dest / "s").is_symlink() and (dest / "s").read_text() == "mine"


def test_hardlink_through_symlink_cannot_reach_outside(jail):
    dest, outside = jail
    with pytest.raises(InvalidLayer, match="hardlink"):
        apply_layer(evil_tar(("s", "sym", str(outside)), ("h", "hard", "s/secret")), dest)
    assert outside_untouched(outside)
    assert not (dest / "h").exists()


def test_symlink_loop_rejected(jail):
    dest, _ = jail
    with pytest.raises(InvalidLayer, match="symlinks"):
        apply_layer(evil_tar(("a", "sym", "b"), ("b", "sym", "a"), ("a/x", "file", "x")), dest)


def test_corrupt_archive_is_invalid_layer(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "f").write_bytes(os.urandom(100_000))
    _, blob = build(tmp_path / "t", compression="gzip")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidLayer):
        apply_layer(io.BytesIO(blob[: len(blob) // 2]), dest)


# ------------------------------------------------------------ overlay form


def overlay_upper_blob(tmp_path: Path) -> bytes:
    """A layer like a step's upper dir: `gone` and `kept/old` deleted, `opq` replaced."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    upper = synthetic_upper(tmp_path / "step-upper")
    (upper / "kept" / "new").write_text("new")
    return build(upper, diff_upperdir, source_date_epoch=EPOCH)[1]


def overlay_base(root: Path) -> Path:
    (root / "opq" / "sub").mkdir(parents=True)
    (root / "opq" / "old").write_text("old")
    (root / "opq" / "sub" / "deep").write_text("deep")
    (root / "gone").write_text("bye")
    (root / "kept").mkdir()
    (root / "kept" / "old").write_text("old")
    (root / "kept" / "stay").write_text("stay")
    return root


def is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and (st.st_uid, st.st_gid) == (0, 0)


@needs_root
def test_apply_overlay_form_keeps_whiteouts_and_opaque_dirs(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(overlay_upper_blob(tmp_path)), dest, overlay=True)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "gone",
        "kept",
        "kept/new",
        "kept/old",
        "opq",
        "opq/new",
    ]
    assert is_whiteout(dest / "gone") and is_whiteout(dest / "kept" / "old")
    assert os.lstat(dest / "gone").st_mtime == EPOCH
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(dest / "kept", "trusted.overlay.opaque")
    # Written back out, it is the same layer.
    again = build(dest, diff_upperdir, source_date_epoch=EPOCH)[1]
    assert plain_tar(again) == plain_tar(overlay_upper_blob(tmp_path / "again"))


@needs_root
def test_apply_overlay_form_deletes_nothing_and_keeps_refusing_overlay_xattrs(tmp_path):
    dest = overlay_base(tmp_path / "dest")
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "d").mkdir()
    os.setxattr(evil / "d", "trusted.overlay.redirect", b"/etc")
    blob = build(evil, tar_directory, xattrs=("trusted.",))[1]
    apply_layer(io.BytesIO(blob), dest, overlay=True)
    with pytest.raises(OSError):
        os.getxattr(dest / "d", "trusted.overlay.redirect")
    apply_layer(io.BytesIO(overlay_upper_blob(tmp_path)), dest, overlay=True)
    assert (dest / "opq" / "old").read_text() == "old"  # hidden by the xattr, not deleted
    assert is_whiteout(dest / "gone")


@needs_root
def test_apply_overlay_form_lets_a_recreated_entry_win(tmp_path):
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in ("x", ".wh.x", ".wh.y", "y"):
            tf.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    blob.seek(0)
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(blob, dest, overlay=True)
    assert (dest / "x").is_file() and (dest / "y").is_file()


@pytest.mark.sandbox
@needs_root
def test_overlay_form_snapshot_works_as_an_overlay_lower(tmp_path):
    if not _overlay_available(tmp_path / "probe"):
        pytest.skip("cannot mount overlayfs here")
    base = overlay_base(tmp_path / "base")
    layer = tmp_path / "layer"
    layer.mkdir()
    apply_layer(io.BytesIO(overlay_upper_blob(tmp_path)), layer, overlay=True)
    upper, work, merged = (tmp_path / d for d in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    # The layer as the upper of two lowers, as a RUN over a cache hit mounts it.
    opts = f"lowerdir={layer}:{base},upperdir={upper},workdir={work},index=off"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        seen = sorted(p.relative_to(merged).as_posix() for p in merged.rglob("*"))
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert seen == ["kept", "kept/new", "kept/stay", "opq", "opq/new"]
    # And the same view as applying the layer the ordinary way.
    flat = tmp_path / "flat"
    flat.mkdir()
    apply_layer(io.BytesIO(build(base)[1]), flat)
    apply_layer(io.BytesIO(overlay_upper_blob(tmp_path / "o2")), flat)
    assert sorted(p.relative_to(flat).as_posix() for p in flat.rglob("*")) == seen
