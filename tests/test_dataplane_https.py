"""The local data plane serves an HTTPS deployment: 443 with a local certificate for the domain (its CA
in the data plane's answer), 80 redirecting there as the listener is configured."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
from urllib.parse import urlsplit

from scripts import local_alb
from tests.support.https import DOMAIN, hosted_zone, https_spec
from tests.test_dataplane import aws  # noqa: F401 - the fixture: clients through the data plane
from tests.test_deploy_workflow import deploy


def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict, bytes]:
    """One request, redirects not followed."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=30)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}")
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def handshake_as(url: str, context: ssl.SSLContext, name: str) -> str:
    """TLS to the local listener asking for `name`, as a browser at https://<name> would; the version."""
    parts = urlsplit(url)
    raw = socket.create_connection((parts.hostname, parts.port), timeout=30)
    with raw, context.wrap_socket(raw, server_hostname=name) as tls:
        return tls.version() or ""


async def test_local_alb_serves_https_with_a_local_certificate_and_redirects_http(client, worker, dataplane):  # noqa: F811
    hosted_zone()
    out = await deploy(client, worker, https_spec())
    balancer = (await asyncio.to_thread(dataplane.load_balancers))[out.alb_dns_name]
    listeners = {lsn["port"]: lsn for lsn in balancer["listeners"]}
    https, http = listeners[443], listeners[80]
    assert https["protocol"] == "HTTPS" and https["url"].startswith("https://") and https["domain"] == DOMAIN
    trusted = ssl.create_default_context(cafile=https["ca_file"])

    answers = [await asyncio.to_thread(get, https["url"], trusted) for _ in range(4)]

    assert [status for status, _, _ in answers] == [200] * 4
    assert {json.loads(body)["instance_id"] for _, _, body in answers} == set(out.instance_ids.values())
    assert await asyncio.to_thread(handshake_as, https["url"], trusted, DOMAIN) in ("TLSv1.2", "TLSv1.3")
    status, headers, _ = await asyncio.to_thread(get, http["url"] + "/health?x=1")
    assert status == 301 and http["redirect"] == {"port": 443, "status": 301}
    assert headers["Location"] == https["url"] + "/health?x=1"
    assert await asyncio.to_thread(local_alb.show, dataplane.url, 2) == 0  # what `make demo` prints: all 200
