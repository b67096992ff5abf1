"""`ADD <url>` through the step cache: keyed on what the URL serves, not on the URL.

A file served by `http.server` on 127.0.0.1 changes between builds in one
FARM_HOME; the ADD step must run again and the image must hold the new
content. Unchanged content is a hit. A miss downloads the URL once: the step
adds the very bytes its key was computed from. With `--checksum` the checksum
is the identity and nothing is fetched to compute the key.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from buildkit.errors import DockerfileError
from tests.engine.conftest import AMD64, ARM64, BASE, Built, build, filesystem_step, outcomes

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

MTIME = 1_500_000_000  # kept across changes: Last-Modified does not give a change away


@dataclass
class Server:
    base: str
    root: Path
    requests: list[str] = field(default_factory=list)

    def serve(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        os.utime(self.root / name, (MTIME, MTIME))
        return "sha256:" + hashlib.sha256(data).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, requests: list[str], **kw: Any) -> None:
        self._requests = requests
        super().__init__(*args, **kw)

    def do_GET(self) -> None:
        self._requests.append(self.path)
        if self.path == "/counter":  # new content on every request
            body = f"request {len(self._requests)}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []
    handler = functools.partial(_Handler, directory=str(root), requests=requests)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", root, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()


def add_step(built: Built, name: str) -> str:
    (how,) = [how for _, step, how in outcomes(built) if step == name]
    return how


def fs_steps(built: Built) -> list[tuple[str, str]]:
    return [(name, how) for _, name, how in outcomes(built) if filesystem_step(name)]


def test_a_changed_download_is_a_miss(tmp_path: Path, server: Server) -> None:
    server.serve("f.txt", b"one\n")
    step = f"ADD {server.base}/f.txt /f.txt"
    dockerfile = BASE + step + "\nRUN cat /f.txt > /copy\n"

    first = build(tmp_path, dockerfile)
    assert add_step(first, step) == "done"
    assert first.rootfs(tmp_path / "r1").joinpath("f.txt").read_text() == "one\n"

    # Same content: the key needs a fetch, the step is CACHED.
    again = build(tmp_path, dockerfile)
    assert {how for _, how in fs_steps(again)} == {"cached"}
    assert again.digest == first.digest

    # Same URL, same size and Last-Modified, new content: the ADD runs again.
    server.serve("f.txt", b"two\n")
    changed = build(tmp_path, dockerfile)
    assert add_step(changed, step) == "done"
    assert add_step(changed, "RUN cat /f.txt > /copy") == "done"
    root = changed.rootfs(tmp_path / "r2")
    assert (root / "f.txt").read_text() == "two\n"
    assert (root / "copy").read_text() == "two\n"
    assert changed.digest != first.digest

    # And back: the first result is still in the cache.
    server.serve("f.txt", b"one\n")
    back = build(tmp_path, dockerfile)
    assert add_step(back, step) == "cached"
    assert back.digest == first.digest


def test_with_checksum_the_key_needs_no_fetch(tmp_path: Path, server: Server) -> None:
    checksum = server.serve("f.txt", b"pinned\n")
    step = f"ADD --checksum={checksum} {server.base}/f.txt /f.txt"
    dockerfile = BASE + step + "\n"

    first = build(tmp_path, dockerfile)
    assert add_step(first, step) == "done"
    assert server.requests == ["/f.txt"]  # the download itself, no key fetch
    again = build(tmp_path, dockerfile)
    assert add_step(again, step) == "cached"
    assert server.requests == ["/f.txt"]
    assert again.rootfs(tmp_path / "r").joinpath("f.txt").read_text() == "pinned\n"


def test_an_unreachable_url_fails_the_build(tmp_path: Path, server: Server) -> None:
    # Found while computing the key, and reported at the ADD's line.
    with pytest.raises(DockerfileError, match=r"Dockerfile:4: ADD: failed to fetch .*: HTTP 404"):
        build(tmp_path, BASE + f"ADD {server.base}/missing /m\n")


def test_a_miss_downloads_once_and_adds_what_the_key_names(tmp_path: Path, server: Server) -> None:
    """A URL whose content changes on every request: the build fetches it once,
    for the key, and the layer holds that same content, for both platforms;
    so a later build that gets the same bytes is a hit on a true record."""
    step = f"ADD {server.base}/counter /counter"
    dockerfile = BASE + step + "\n"
    first = build(tmp_path, dockerfile, platforms=(AMD64, ARM64))
    assert add_step(first, step) == "done"
    assert server.requests == ["/counter"]
    for platform in (AMD64, ARM64):
        root = first.rootfs(tmp_path / f"r1-{platform.replace('/', '-')}", platform=platform)
        assert root.joinpath("counter").read_text() == "request 1\n"

    second = build(tmp_path, dockerfile)  # the server now sends "request 2"
    assert add_step(second, step) == "done"
    assert server.requests == ["/counter", "/counter"]
    assert second.rootfs(tmp_path / "r2").joinpath("counter").read_text() == "request 2\n"
