"""A real etcd (Debian's etcd-server) for the unit tests of the etcd store:
one member on free ports of 127.0.0.1, in a folder of its own, for the whole
session. Each test takes a prefix of its own, so tests never see each other's
keys."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    """A port free now (another process may take it before it is used:
    EtcdServer.start tries again on new ones)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HELD: list[socket.socket] = []


def closed_port() -> int:
    """A port where nothing answers and nothing can start listening while
    the tests run (another worker's etcd included): held bound, never
    listening, so a connection to it is refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return s.getsockname()[1]


class EtcdServer:
    def __init__(self, folder):
        self.folder = folder
        self.port, self.peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> "EtcdServer":
        """Start the member; on new ports if another process took one of
        them first (the unit tests run in several processes)."""
        for _ in range(5):
            if self._start():
                return self
            self.port, self.peer = free_port(), free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            shutil.rmtree(self.folder / "data", ignore_errors=True)   # made for the ports before
        raise RuntimeError(f"etcd did not start: see {self.folder / 'etcd.log'}")

    def _start(self) -> bool:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("etcd is not installed (Debian package etcd-server; make unit installs it)")
        self.log = open(self.folder / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [binary, "--name", "unit", "--data-dir", str(self.folder / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer}",
             "--initial-cluster", f"unit=http://127.0.0.1:{self.peer}"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    healthy = b'"true"' in r.read()
            except OSError:
                healthy = False
            if healthy and self.proc.poll() is None and self._ours():
                return True
            if self.proc.poll() is not None:
                break       # a port taken (by another worker's etcd, whose /health may have answered)
            time.sleep(0.1)
        self.stop()
        self.log.close()
        return False

    def _ours(self) -> bool:
        """Whether the member answering on the port is this one (its peer port)."""
        req = urllib.request.Request(self.url + "/v3/cluster/member/list", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                members = json.loads(r.read()).get("members", [])
        except (OSError, ValueError):
            return False
        return any(f":{self.peer}" in u for m in members for u in m.get("peerURLs", []))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class EtcdProxy:
    """An HTTP proxy in front of a member that fails as a member can:
    `lose`: paths ("kv/txn") whose next answer is lost (etcd did the request,
    the client hears nothing: the connection is closed); `cut_short`: paths
    whose answers stop half way; `cut`: every request closed unanswered (this
    client is cut off, the member still works for others)."""

    def __init__(self, server: EtcdServer):
        import http.server
        import threading
        self.server = server
        self.lose: set[str] = set()
        self.cut_short: set[str] = set()
        self.cut = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.removeprefix("/v3/")
                if proxy.cut:
                    self.close_connection = True
                    return
                import http.client
                conn = http.client.HTTPConnection("127.0.0.1", proxy.server.port, timeout=10)
                conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                answer = conn.getresponse()
                data, status = answer.read(), answer.status
                conn.close()
                if path in proxy.lose:
                    proxy.lose.discard(path)
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if path in proxy.cut_short:
                    self.wfile.write(data[:len(data) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
