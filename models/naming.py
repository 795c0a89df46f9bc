"""One logical name per resource: the key of find-or-create, shared by deploy, rollback and teardown.

Workflow and activities both import this module, so it must stay free of I/O.
"""

from __future__ import annotations

import re

PROJECT = "scaleout"
DEPLOYMENT_TAG = f"{PROJECT}:deployment"
RESOURCE_TAG = f"{PROJECT}:resource"
GROUP_TAG = f"{PROJECT}:group"
APP_VERSION_TAG = f"{PROJECT}:app-version"
"""On each instance: the `app.version` it was launched with (none on instances launched before: the
default version)."""
DEFAULT_APP_VERSION = "1"

ALB_SUFFIX = "-alb"
TARGET_GROUP_SUFFIX = "-tg"
ELB_NAME_LIMIT = 32
MAX_DEPLOYMENT_ID_LENGTH = ELB_NAME_LIMIT - max(len(ALB_SUFFIX), len(TARGET_GROUP_SUFFIX))

ALB_SECURITY_GROUP = "sg-alb"
APP_SECURITY_GROUP = "sg-app"
HTTP_RULE = "HTTP to the ALB"
HTTPS_RULE = "HTTPS to the ALB"
APP_RULE = "App port from the load balancer only"
"""The descriptions of the deployment's ingress rules: the create writes them, a drift repair that
opens a rule again writes the same."""
TARGET_GROUP = "tg-app"
LOAD_BALANCER = "alb"
APP_GROUP = "app"
CERTIFICATE = "certificate"
VALIDATION_RECORD = "dns-validation"
ALIAS_RECORD = "dns-alias"
HOSTED_ZONE_TAG = f"{PROJECT}:hosted-zone"
"""On the certificate we request: the zone of its validation record, so `down` finds the record."""
ALIAS_TAG = f"{PROJECT}:alias-record"
"""On the HTTPS listener: `<zone id>/<domain>` of the alias record, so `down` finds the record."""


def private_subnet(availability_zone: str) -> str:
    return f"subnet-private-{availability_zone}"


def elastic_ip(availability_zone: str) -> str:
    return f"eip-nat-{availability_zone}"


def nat_gateway(availability_zone: str) -> str:
    return f"nat-{availability_zone}"


def route_table(availability_zone: str | None) -> str:
    """`None` is the single table shared by every private subnet (NAT mode `single`)."""
    return "rt-private" if availability_zone is None else f"rt-private-{availability_zone}"


def instance(index: int, generation: int = 0) -> str:
    """`app-<slot>` as first deployed; `app-<slot>-g<n>` for the instance the n-th change of the
    instances launched into that slot (a replacement is a new resource: it needs its own name)."""
    return f"{APP_GROUP}-{index}" + (f"-g{generation}" if generation else "")


INSTANCE_NAME = re.compile(rf"^{APP_GROUP}-(?P<slot>\d+)(?:-g(?P<generation>\d+))?$")


def instance_slot(name: str) -> tuple[int, int] | None:
    """(slot, generation) of an instance's logical name; None for a name `instance` never makes."""
    match = INSTANCE_NAME.match(name)
    if match is None:
        return None
    return int(match["slot"]), int(match["generation"] or 0)


def listener(port: int) -> str:
    return f"listener-{port}"


def load_balancer_name(deployment_id: str) -> str:
    return f"{deployment_id}{ALB_SUFFIX}"


def target_group_name(deployment_id: str) -> str:
    return f"{deployment_id}{TARGET_GROUP_SUFFIX}"


def display_name(deployment_id: str, resource: str) -> str:
    """The `Name` tag shown in the AWS console."""
    return f"{deployment_id}-{resource}"
