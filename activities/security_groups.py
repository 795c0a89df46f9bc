"""Security groups: the ALB's (open to the world on the listener port) and the app's (ALB only); a
converge changes who may reach the ALB in place."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity

from activities.aws_clients import AwsClients
from activities.consistency import FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, delete_every, until_visible
from activities.errors import aws_errors, client_error_code
from activities.tags import all_tagged, earlier, first_tagged, key_filters, tag_specifications
from activities.waits import Heartbeats, pause
from models.converge import CidrRule, IngressChangeInput
from models.naming import display_name
from models.resources import (
    Deleted,
    DeleteInput,
    IngressRule,
    Kind,
    Resource,
    ResourceKey,
    SecurityGroupInput,
)


class SecurityGroupActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    def _find(self, key: ResourceKey) -> dict[str, Any] | None:
        groups = self._aws.ec2(key.scope.region).describe_security_groups(Filters=key_filters(key))
        return first_tagged(groups["SecurityGroups"], key)

    @activity.defn
    @aws_errors
    def create_security_group(self, request: SecurityGroupInput) -> Resource:
        key = request.key
        create = self._aws.ec2(key.scope.region, creates=True)
        group = earlier(key, lambda: self._find(key))
        if group is None:
            group_id = create.create_security_group(
                GroupName=display_name(key.scope.deployment_id, key.name),
                Description=request.description,
                VpcId=request.vpc_id,
                TagSpecifications=tag_specifications(key, "security-group"),
            )["GroupId"]
            permissions: list[dict[str, Any]] = []
        else:
            group_id = group["GroupId"]
            permissions = group.get("IpPermissions", [])
        for rule in request.ingress:
            if not has_rule(permissions, rule):
                # The group, and a rule's source group, may be seconds old.
                until_visible(
                    lambda r=rule: authorize(create, group_id, r, key), f"security group {group_id}"
                )
        return Resource(kind=Kind.SECURITY_GROUP, name=key.name, id=group_id)

    @activity.defn
    @aws_errors
    def delete_security_group(self, request: DeleteInput) -> Deleted:
        """Refused (retryably) while an instance, a load balancer or another group's rule uses it."""
        key = request.key
        ec2 = self._aws.ec2(key.scope.region)

        def tagged() -> list[str]:
            groups = ec2.describe_security_groups(Filters=key_filters(key))["SecurityGroups"]
            return [g["GroupId"] for g in all_tagged(groups, key)]

        return delete_every(
            request, Kind.SECURITY_GROUP, tagged, lambda g: ec2.delete_security_group(GroupId=g)
        )

    @activity.defn
    @aws_errors
    def change_ingress(self, request: IngressChangeInput) -> Resource:
        """Authorize every rule of `add` first, then revoke every rule of `remove`: at no moment is a
        client that both sides allow refused. Both calls are safe to repeat (a duplicate is there, a
        rule not found is gone, once AWS has had time to show it)."""
        key = request.key
        create = self._aws.ec2(key.scope.region, creates=True)
        for rule in request.add:
            ingress = IngressRule(port=rule.port, cidr=rule.cidr, description="HTTP(S) to the ALB")
            until_visible(
                lambda r=ingress: authorize(create, request.group_id, r, key),
                f"security group {request.group_id}",
            )
        ec2 = self._aws.ec2(key.scope.region)
        for rule in request.remove:
            _revoke(ec2, request, rule)
        return Resource(kind=Kind.SECURITY_GROUP, name=key.name, id=request.group_id)


def _revoke(ec2: Any, request: IngressChangeInput, rule: CidrRule) -> None:
    """InvalidPermission.NotFound: the rule is gone, or (made seconds ago) not shown yet, which only
    `settled_after` tells apart; until then it asks again."""
    permission = {"IpProtocol": "tcp", "FromPort": rule.port, "ToPort": rule.port}
    permission["IpRanges"] = [{"CidrIp": rule.cidr}]
    settled = request.settled_after
    deadline = time.monotonic() + (
        max((settled - datetime.now(UTC)).total_seconds(), 0.0) if settled else 0.0
    )
    what = f"the rule {rule.cidr} on port {rule.port} of {request.group_id}"
    heartbeat, delay = Heartbeats(), FIRST_BACKOFF_SECONDS
    while True:
        try:
            ec2.revoke_security_group_ingress(GroupId=request.group_id, IpPermissions=[permission])
            return
        except ClientError as err:
            if client_error_code(err) != "InvalidPermission.NotFound":
                raise
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        heartbeat(f"looking for {what} until AWS's view has settled")
        pause(min(delay, remaining), what)
        delay = min(delay * 2, MAX_BACKOFF_SECONDS)


def _permission(rule: IngressRule) -> dict[str, Any]:
    permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": rule.port, "ToPort": rule.port}
    if rule.cidr:
        permission["IpRanges"] = [{"CidrIp": rule.cidr, "Description": rule.description}]
    if rule.source_security_group_id:
        permission["UserIdGroupPairs"] = [
            {"GroupId": rule.source_security_group_id, "Description": rule.description}
        ]
    return permission


def has_rule(permissions: list[dict[str, Any]], rule: IngressRule) -> bool:
    """Only the exact rule counts: a port range that holds the port is someone else's rule, which a
    drift repair revokes (activities/live.py reads it as `tcp/80-90`)."""
    for permission in permissions:
        ports = (permission.get("IpProtocol"), permission.get("FromPort"), permission.get("ToPort"))
        if ports != ("tcp", rule.port, rule.port):
            continue
        cidrs = {r.get("CidrIp") for r in permission.get("IpRanges", [])}
        groups = {p.get("GroupId") for p in permission.get("UserIdGroupPairs", [])}
        if rule.cidr in cidrs or rule.source_security_group_id in groups:
            return True
    return False


def authorize(ec2: Any, group_id: str, rule: IngressRule, key: ResourceKey) -> None:
    try:
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[_permission(rule)],
            TagSpecifications=tag_specifications(key, "security-group-rule"),
        )
    except ClientError as err:
        # A retry after a lost reply: the rule is there, which is what we wanted.
        if client_error_code(err) != "InvalidPermission.Duplicate":
            raise
