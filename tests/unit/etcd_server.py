"""A real etcd (Debian's etcd-server) for the unit tests of the etcd store:
one member on free ports of 127.0.0.1, in a folder of its own, for the whole
session. Each test takes a prefix of its own, so tests never see each other's
keys."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    def __init__(self, folder):
        self.folder = folder
        self.port, self.peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> "EtcdServer":
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
                    if b'"true"' in r.read():
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"etcd did not start: see {self.folder / 'etcd.log'}")

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
