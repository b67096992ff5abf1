"""Forwarding an ssh-agent socket into a step, as `RUN --mount=type=ssh` wants.

The step gets a socket of its own, not the user's: `forward_agent` listens on
a new Unix socket (owned and moded as the mount says, which would be wrong to
do to the user's socket) and relays every connection to the real agent. The
step can talk the agent protocol and nothing else; the relay stops, and every
connection is closed, when the context exits.

Unix socket paths are limited to 108 bytes, so both ends are reached through
`/proc/self/fd/<dir fd>/<name>`, which is short whatever the directory.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 64 * 1024


def _short(dir_fd: int, name: str) -> str:
    return f"/proc/self/fd/{dir_fd}/{name}"


@contextlib.contextmanager
def forward_agent(
    agent: Path, directory: Path, name: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600
) -> Iterator[Path]:
    """Listen at `directory/name`, relay to `agent`; yield the new socket's path."""
    path = directory / name
    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(_short(dir_fd, name))
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
        os.chmod(path, mode)
        listener.listen(16)
        relay = _Relay(listener, agent)
        relay.start()
        try:
            yield path
        finally:
            relay.stop()
    finally:
        listener.close()
        os.close(dir_fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _Relay(threading.Thread):
    """One thread: accepts step connections and pumps bytes both ways."""

    def __init__(self, listener: socket.socket, agent: Path) -> None:
        super().__init__(name="farm-ssh-agent-relay", daemon=True)
        self.listener = listener
        self.agent = agent
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._peers: dict[socket.socket, socket.socket] = {}

    def stop(self) -> None:
        os.write(self._wake_w, b"x")
        self.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "stop")
        try:
            while True:
                for key, _ in sel.select():
                    if key.data == "stop":
                        return
                    if key.data == "accept":
                        self._accept(sel)
                    else:
                        assert isinstance(key.fileobj, socket.socket)
                        self._pump(sel, key.fileobj)
        finally:
            for sock in list(self._peers):
                sock.close()
            sel.close()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            parent = os.open(self.agent.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                upstream.connect(_short(parent, self.agent.name))
            finally:
                os.close(parent)
        except OSError:
            upstream.close()
            client.close()  # the step sees the agent hang up
            return
        self._peers[client] = upstream
        self._peers[upstream] = client
        sel.register(client, selectors.EVENT_READ, "pump")
        sel.register(upstream, selectors.EVENT_READ, "pump")

    def _pump(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        peer = self._peers[sock]
        try:
            data = sock.recv(_CHUNK)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        for s in (sock, peer):
            sel.unregister(s)
            del self._peers[s]
            s.close()
