"""A real TCP proxy on loopback that can be switched off and on, to make a database
server unreachable for a while (connection refused / connections cut) in tests.

While it is off, the port stays bound (by a socket that does not listen, so connecting is
refused): no other process on the machine can take it meanwhile, and `start` always gets it
back. A connection accepted while `stop` runs is cut too, never left open through an outage."""
from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._reserved: socket.socket | None = _bound(0)      # holds the port whenever not listening
        self.port = self._reserved.getsockname()[1]
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            server, self._reserved = self._reserved or _bound(self.port), None
            server.listen(64)
            self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, like a server going down."""
        with self._lock:
            server, self._server = self._server, None
            if server:
                try:
                    server.shutdown(socket.SHUT_RDWR)   # wakes the accepting thread on Linux
                except OSError:
                    pass
                server.close()
                self._reserved = _bound(self.port)    # still ours, but refusing connections
            for conn in self._conns:
                _cut(conn)
            self._conns.clear()

    def close(self) -> None:
        """Stop and give the port back."""
        self.stop()
        with self._lock:
            reserved, self._reserved = self._reserved, None
        if reserved:
            reserved.close()

    def _accept(self, server):
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:          # stopped while this one was being set up
                    _cut(client)
                    _cut(upstream)
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def _cut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
