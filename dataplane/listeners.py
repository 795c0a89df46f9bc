"""A load balancer listener on a local port: each request goes to one target of its target group.

As an ALB answers: a target chosen by the group (round robin over healthy targets, all when none is
healthy), the request relayed to what listens for that target, X-Forwarded-* headers added. No target
at all: 503. A target that cannot be reached (nothing listens, the connection breaks): 502. A target
that does not answer within the idle timeout: 504.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, Protocol

from dataplane.groups import Target
from dataplane.serving import Handler, Reply, Server, relay

IDLE_TIMEOUT = 60.0
"""ALB's default idle timeout, seconds (not scaled: it bounds a request, not a state change)."""
FORWARDED = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"}
"""Set by the load balancer; a client's own X-Forwarded-For is kept in front of its address."""


class Upstream(Protocol):
    """A listener's view of its target group."""

    def choose(self) -> Target | None: ...

    def release(self, target: Target) -> None: ...

    def local_port(self, target: Target) -> int | None:
        """Where the target's app listens on this machine; None when nothing does."""


def error_page(status: int, title: str) -> Reply:
    text = f"{status} {title}"
    body = f"<html><head><title>{text}</title></head><body><center><h1>{text}</h1></center></body></html>\n"
    return Reply(status, [("Content-Type", "text/html"), ("Server", "awselb/2.0")], body.encode())


NO_TARGET = error_page(503, "Service Temporarily Unavailable")
UNREACHABLE = error_page(502, "Bad Gateway")
TIMED_OUT = error_page(504, "Gateway Time-out")


class ListenerServer(Server):
    def __init__(
        self,
        port: int,
        listener_port: int,
        upstream: Callable[[], Upstream | None],
        *,
        tls: ssl.SSLContext | None = None,
        redirect: Callable[[], tuple[int, int] | None] | None = None,
    ) -> None:
        """`listener_port`: the listener's port in AWS (X-Forwarded-Port); `upstream`: its group now;
        `tls`: serve HTTPS with this context; `redirect`: (status, local port of the HTTPS listener it
        names) when the listener redirects instead of forwarding."""
        super().__init__(port, _ListenerHandler)
        self.listener_port = listener_port
        self.upstream = upstream
        self.tls = tls
        self.redirect = redirect

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake in the request's own thread: a slow client holds up no one else."""
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # a client that does not speak TLS (or left): nothing to answer
        super().finish_request(request, client_address)


class _ListenerHandler(Handler):
    server: ListenerServer

    def handle_request(self) -> None:
        body = self.body()
        target = self.server.redirect() if self.server.redirect else None
        if target is not None:
            self.reply(self._redirect(*target))
            return
        upstream = self.server.upstream()
        target = upstream.choose() if upstream is not None else None
        if upstream is None or target is None:
            self.reply(NO_TARGET)
            return
        try:
            self.reply(self._forward(upstream, target, body))
        finally:
            upstream.release(target)

    def _redirect(self, status: int, local_port: int) -> Reply:
        """As the ALB answers (`https://#{host}:#{port}/#{path}?#{query}`), with the local port of the
        listener it names."""
        host = (self.headers.get("Host") or "127.0.0.1").rsplit(":", 1)[0]
        location = f"https://{host}:{local_port}{self.path}"
        title = "Moved Permanently" if status == 301 else "Found"
        page = error_page(status, title)
        return Reply(status, [*page.headers, ("Location", location)], page.body)

    def _forward(self, upstream: Upstream, target: Target, body: bytes) -> Reply:
        port = upstream.local_port(target)
        if port is None:
            return UNREACHABLE
        client = self.client_address[0]
        forwarded_for = ", ".join(filter(None, [self.headers.get("X-Forwarded-For"), client]))
        headers = [(k, v) for k, v in self.end_to_end() if k.lower() not in FORWARDED] + [
            ("X-Forwarded-For", forwarded_for),
            ("X-Forwarded-Proto", "https" if self.server.tls else "http"),
            ("X-Forwarded-Port", str(self.server.listener_port)),
        ]
        try:
            return relay(port, self.command, self.path, headers, body, IDLE_TIMEOUT)
        except TimeoutError:
            return TIMED_OUT
        except OSError:
            return UNREACHABLE
