"""RUN --network: none, the default namespace, host (only with --allow), and no
way to the host's loopback. Nothing here sends traffic off the machine."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildkit.errors import DockerfileError
from tests.engine.conftest import BASE, build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]


def _host_interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _interfaces(built, tmp_path: Path) -> set[str]:  # type: ignore[no-untyped-def]
    return set((built.rootfs(tmp_path / "root") / "nets").read_text().split())


def test_network_none_sees_only_lo(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "RUN --network=none ls /sys/class/net > /nets && ip -o link >> /links\n",
    )
    assert _interfaces(built, tmp_path) == {"lo"}
    links = (built.rootfs(tmp_path / "root2") / "links").read_text().splitlines()
    assert len(links) == 1 and ": lo:" in links[0]


def test_default_network_has_its_own_namespace(tmp_path: Path) -> None:
    built = build(tmp_path, BASE + "RUN ls /sys/class/net > /nets\n")
    inside = _interfaces(built, tmp_path)
    assert "lo" in inside
    assert len(inside) >= 2  # lo and the step's own interface
    assert not (inside & (_host_interfaces() - {"lo"})), inside


def test_network_host_needs_allow(tmp_path: Path) -> None:
    with pytest.raises(DockerfileError, match=r"--allow network\.host") as info:
        build(tmp_path, BASE + "RUN --network=host true\n")
    assert info.value.line == 4


def test_network_host_with_allow_sees_the_host_interfaces(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "RUN --network=host ls /sys/class/net > /nets\n",
        allow=("network.host",),
    )
    assert _interfaces(built, tmp_path) == _host_interfaces()


@contextlib.contextmanager
def _listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP listener on the host's 127.0.0.1; yields its port and the accepted peers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(peer)
            with contextlib.suppress(OSError):
                conn.sendall(b"HOST-SECRET\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.mark.parametrize("network", ["default", "none"])
def test_a_step_cannot_reach_the_hosts_loopback(tmp_path: Path, network: str) -> None:
    with _listener() as (port, accepted):
        # 10.0.2.2 is slirp4netns' gateway, which would be the host's loopback
        # without --disable-host-loopback.
        script = " ; ".join(
            f"(nc -w 2 {addr} {port} </dev/null > /got-{addr} 2>&1 && echo CONNECTED {addr} "
            f"|| echo REFUSED {addr})"
            for addr in ("127.0.0.1", "10.0.2.2")
        )
        built = build(tmp_path, BASE + f"RUN --network={network} {script}\n")
        # The sanity check: the listener does work from the host itself.
        with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            assert probe.recv(64) == b"HOST-SECRET\n"
    logs = built.logs()
    assert "REFUSED 127.0.0.1" in logs and "REFUSED 10.0.2.2" in logs, logs
    assert len(accepted) == 1  # only the probe
    root = built.rootfs(tmp_path / "root")
    assert all(b"HOST-SECRET" not in p.read_bytes() for p in root.glob("got-*"))
