"""Faults on the wire (`before-send`): botocore parses them and its retry handler sees them as AWS's.

A `before-call` fault (tests/support/faults.py) replaces the whole call, retries included, so it shows
what reaches the activity; a `before-send` fault replaces one HTTP attempt, so it shows what
botocore's own retries do with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

EC2_ERROR = (
    "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
    "<RequestID>injected</RequestID></Response>"
)
QUERY_ERROR = (  # elbv2, and the other query-protocol services
    "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    "<RequestId>injected</RequestId></ErrorResponse>"
)


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def http_error(
    service: str,
    code: str,
    status: int,
    message: str = "injected on the wire",
    *,
    json_protocol: bool = False,
) -> AWSResponse:
    """An error answer in the service's own wire format, so botocore parses and retries it as AWS's."""
    if json_protocol:  # SSM and the other JSON-protocol services
        body = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.1"
    else:
        template = EC2_ERROR if service == "ec2" else QUERY_ERROR
        body = template.format(code=code, message=message).encode()
        content_type = "text/xml"
    return AWSResponse("https://injected.invalid", status, {"content-type": content_type}, _Body(body))


@dataclass
class WireFault:
    """Answer the first `times` HTTP attempts of `operation` with `code`/`status`; count every attempt."""

    service: str
    operation: str
    code: str
    status: int
    times: int
    attempts: int = 0
    answered: list[int] = field(default_factory=list)

    def install(self, session: boto3.Session) -> WireFault:
        session.events.register(f"before-send.{self.service}.{self.operation}", self._send)
        return self

    def _send(self, **_: Any) -> AWSResponse | None:
        self.attempts += 1
        if self.attempts <= self.times:
            self.answered.append(self.attempts)
            return http_error(self.service, self.code, self.status)
        return None
