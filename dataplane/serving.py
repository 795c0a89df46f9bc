"""HTTP plumbing shared by the AWS endpoint and the load balancer listeners: serve on 127.0.0.1, relay.

Relaying reads whole bodies (AWS answers and the app's answers are small) and drops hop-by-hop
headers, so each side keeps its own connection handling.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",  # the whole body is read before relaying: nothing to continue
}
POLL_SECONDS = 0.1
"""How soon a server notices `stop` (the standard library's default is 0.5 s)."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Server(ThreadingHTTPServer):
    """A threaded server on 127.0.0.1 that runs in a thread of its own until `stop`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self._thread = threading.Thread(
            target=self.serve_forever, args=(POLL_SECONDS,), name=f"http-{self.port}", daemon=True
        )

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    """Every method goes to `handle_request`; keep-alive HTTP/1.1; no access log on stderr."""

    protocol_version = "HTTP/1.1"

    def handle_request(self) -> None:
        raise NotImplementedError

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = lambda self: (
        self.handle_request()
    )  # noqa: E731

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _chunked(self) -> bytes:
        parts = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(parts)

    def end_to_end(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]

    def reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)


def relay(
    port: int, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes, timeout: float
) -> Reply:
    """Send one request to 127.0.0.1:`port` and read the whole answer; OSError when that fails."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        headers = list(headers)
        if not any(name.lower() == "host" for name, _ in headers):
            headers.append(("Host", f"127.0.0.1:{port}"))
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        answer = response.read() if method != "HEAD" else b""
        return Reply(response.status, response.getheaders(), answer)
    except http.client.HTTPException as err:
        raise OSError(f"bad answer: {err}") from err
    finally:
        connection.close()
