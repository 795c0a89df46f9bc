"""The AWS query protocol as the data plane reads and writes it: form bodies in, ELBv2 XML out.

EC2 and ELBv2 take `Action=...&Version=...` form bodies; ELBv2 answers XML in the
2015-12-01 namespace. Only the answers the data plane gives itself are written here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from dataplane.health import Health

ELBV2_VERSION = "2015-12-01"
ELBV2_NAMESPACE = f"http://elasticloadbalancing.amazonaws.com/doc/{ELBV2_VERSION}/"
CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
TARGET_FIELD = re.compile(r"^Targets\.member\.(?P<n>\d+)\.(?P<field>\w+)$")

Form = list[tuple[str, str]]


def parse_form(body: bytes) -> Form:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return []


def signer(authorization: str | None) -> tuple[str, str, str] | None:
    """(access key, region, service) from a SigV4 Authorization header."""
    match = CREDENTIAL.search(authorization or "")
    return (match["key"], match["region"], match["service"]) if match else None


def numbered(form: Form, prefix: str) -> list[str]:
    """`Prefix.1`, `Prefix.2`, ... values in order (e.g. InstanceId.N)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)$")
    found = sorted((int(m[1]), value) for key, value in form if (m := pattern.match(key)))
    return [value for _, value in found]


def targets(form: Form) -> list[tuple[str, int | None]]:
    """`Targets.member.N.Id/.Port` as (id, port or None), in order."""
    members: dict[int, dict[str, str]] = {}
    for key, value in form:
        if match := TARGET_FIELD.match(key):
            members.setdefault(int(match["n"]), {})[match["field"]] = value
    return [
        (m["Id"], int(m["Port"]) if m.get("Port", "").isdigit() else None)
        for _, m in sorted(members.items())
        if "Id" in m
    ]


def without_targets(form: Form, dropped: set[tuple[str, int | None]]) -> Form:
    """The form with some `Targets.member.N` removed and the rest renumbered from 1."""
    kept = [t for t in targets(form) if t not in dropped]
    form = [(k, v) for k, v in form if not TARGET_FIELD.match(k)]
    for n, (target_id, port) in enumerate(kept, start=1):
        form.append((f"Targets.member.{n}.Id", target_id))
        if port is not None:
            form.append((f"Targets.member.{n}.Port", str(port)))
    return form


def encode_form(form: Form) -> bytes:
    return urlencode(form).encode("utf-8")


def _answer(action: str, result: str) -> bytes:
    return (
        f'<{action}Response xmlns="{ELBV2_NAMESPACE}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>"
    ).encode()


def target_health_answer(descriptions: Iterable[tuple[str, int, str, Health]]) -> bytes:
    """DescribeTargetHealth's answer from (target id, port, health check port, health)."""
    members = []
    for target_id, port, check_port, health in descriptions:
        parts = [f"<State>{health.state.value}</State>"]
        if health.reason:
            parts.append(f"<Reason>{escape(health.reason)}</Reason>")
        if health.description:
            parts.append(f"<Description>{escape(health.description)}</Description>")
        members.append(
            f"<member><Target><Id>{escape(target_id)}</Id><Port>{port}</Port></Target>"
            f"<HealthCheckPort>{escape(check_port)}</HealthCheckPort>"
            f"<TargetHealth>{''.join(parts)}</TargetHealth></member>"
        )
    return _answer(
        "DescribeTargetHealth", f"<TargetHealthDescriptions>{''.join(members)}</TargetHealthDescriptions>"
    )


def deregistered_answer() -> bytes:
    return _answer("DeregisterTargets", "")


def elements(tag: str, body: bytes) -> list[str]:
    """Every `<tag>value</tag>` in an XML answer (the ids of what a call made)."""
    return re.findall(rf"<{tag}>([^<]+)</{tag}>", body.decode("utf-8", "replace"))
