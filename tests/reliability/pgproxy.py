"""A TCP proxy in front of PostgreSQL that a test can pause: while paused it cuts every open
connection and closes new ones at once, which is what a database outage looks like to a client."""

from __future__ import annotations

import contextlib
import socket
import threading

from kamwatch.dev.broker import free_port


class PausableProxy:
    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.port = free_port()
        self.paused = threading.Event()
        self.refused = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._stopped = False

    def start(self) -> None:
        threading.Thread(target=self._accept, name="pg-proxy", daemon=True).start()

    def pause(self) -> None:
        """Refuse new connections and cut the open ones (both directions)."""
        self.paused.set()
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def resume(self) -> None:
        self.paused.clear()

    def stop(self) -> None:
        self._stopped = True
        self.pause()
        _close(self._server)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.paused.is_set():
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
                with self._lock:
                    self._open.discard(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
