"""Target group, Application Load Balancer, listener, target registration and health.

ELBv2 resources have account-unique names, so they are found by name (derived from the deployment id)
and then checked to carry our deployment tag: a name taken by someone else is an error, not ours to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws_clients import AwsClients
from activities.consistency import (
    delete_by_id,
    delete_every,
    found_once_settled,
    ids_to_delete,
    until_visible,
)
from activities.errors import aws_errors, client_error_code, ignore_not_found
from activities.tags import earlier, owned_by, tags_for
from activities.target_health import naming_unhealthy_targets
from activities.waits import wait_for
from models.live import https_redirect
from models.naming import load_balancer_name, target_group_name
from models.resources import (
    Deleted,
    DeleteInput,
    Kind,
    ListenerInput,
    LoadBalancer,
    LoadBalancerInput,
    RegisterTargetsInput,
    Resource,
    ResourceKey,
    TargetGroupInput,
    TargetGroupSettings,
    TargetsHealthyInput,
)

DEREGISTRATION_DELAY = "deregistration_delay.timeout_seconds"
DEFAULT_HEALTH_CHECK_TIMEOUT_SECONDS = 5
"""AWS's (and moto's) check timeout for an HTTP instance target group."""


def health_check_parameters(settings: TargetGroupSettings) -> dict[str, Any]:
    """CreateTargetGroup's and ModifyTargetGroup's health check parameters for these settings."""
    return {
        "HealthCheckPath": settings.health_check_path,
        "HealthCheckIntervalSeconds": settings.health_check_interval_seconds,
        "HealthyThresholdCount": settings.healthy_threshold,
        "UnhealthyThresholdCount": settings.unhealthy_threshold,
    }


def health_check_timeout(settings: TargetGroupSettings) -> dict[str, Any]:
    """AWS's default check timeout, unless the interval is as short (AWS refuses a timeout that is not
    below the interval): a function of the interval, so restoring an interval restores the timeout."""
    interval = settings.health_check_interval_seconds
    return {"HealthCheckTimeoutSeconds": min(DEFAULT_HEALTH_CHECK_TIMEOUT_SECONDS, interval - 1)}


def deregistration_delay(settings: TargetGroupSettings) -> list[dict[str, str]]:
    return [{"Key": DEREGISTRATION_DELAY, "Value": str(settings.deregistration_delay_seconds)}]


@dataclass(frozen=True)
class NamedLookup:
    """How to find an ELBv2 resource by its account-unique name."""

    operation: str
    field: str
    arn_field: str
    not_found: str


TARGET_GROUPS = NamedLookup("describe_target_groups", "TargetGroups", "TargetGroupArn", "TargetGroupNotFound")
LOAD_BALANCERS = NamedLookup(
    "describe_load_balancers", "LoadBalancers", "LoadBalancerArn", "LoadBalancerNotFound"
)


def find_by_name(elbv2: Any, lookup: NamedLookup, name: str) -> dict[str, Any] | None:
    try:
        return getattr(elbv2, lookup.operation)(Names=[name])[lookup.field][0]
    except ClientError as err:
        if client_error_code(err) == lookup.not_found:
            return None
        raise


def _arns(item: dict[str, Any] | None, lookup: NamedLookup) -> list[str]:
    return [item[lookup.arn_field]] if item is not None else []


def tags_of(elbv2: Any, arn: str) -> list[dict[str, str]]:
    return elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"][0].get("Tags", [])


def protocol(request: ListenerInput) -> dict[str, Any]:
    """HTTP, or HTTPS with the request's certificate and TLS policy."""
    if request.certificate_arn is None:
        return {"Protocol": "HTTP"}
    return {
        "Protocol": "HTTPS",
        "Certificates": [{"CertificateArn": request.certificate_arn}],
        "SslPolicy": request.ssl_policy,
    }


def default_action(request: ListenerInput) -> dict[str, Any]:
    return listener_action(request.target_group_arn, request.redirect_to_port)


def listener_action(target_group_arn: str, redirect_to_port: int | None) -> dict[str, Any]:
    """Forward to the target group, or answer 301 to the same URL over HTTPS."""
    if redirect_to_port is None:
        return {"Type": "forward", "TargetGroupArn": target_group_arn}
    return {"Type": "redirect", "RedirectConfig": https_redirect(redirect_to_port)}


class LoadBalancingActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    def _find_owned(self, key: ResourceKey, lookup: NamedLookup, name: str) -> dict[str, Any] | None:
        elbv2 = self._aws.elbv2(key.scope.region)
        item = find_by_name(elbv2, lookup, name)
        if item is not None and not owned_by(tags_of(elbv2, item[lookup.arn_field]), key.scope):
            raise ApplicationError(
                f"the name {name!r} belongs to a resource of another deployment or of someone "
                "else in this account; choose another deployment_id",
                type="NameTaken",
                non_retryable=True,
            )
        return item

    # Target group

    def _find_target_group(self, key: ResourceKey) -> dict[str, Any] | None:
        return self._find_owned(key, TARGET_GROUPS, target_group_name(key.scope.deployment_id))

    @activity.defn
    @aws_errors
    def create_target_group(self, request: TargetGroupInput) -> Resource:
        key = request.key
        settings = request.settings or TargetGroupSettings(health_check_path=request.health_check_path)
        checks = (
            {**health_check_parameters(settings), **health_check_timeout(settings)}
            if request.settings
            else {}
        )
        group = (
            earlier(key, lambda: self._find_target_group(key))
            or self._aws.elbv2(key.scope.region, creates=True).create_target_group(
                Name=target_group_name(key.scope.deployment_id),
                Protocol="HTTP",
                Port=request.port,
                VpcId=request.vpc_id,
                TargetType="instance",
                HealthCheckProtocol="HTTP",
                Matcher={"HttpCode": "200"},
                Tags=tags_for(key),
                **(checks or {"HealthCheckPath": request.health_check_path}),
            )["TargetGroups"][0]
        )
        arn = group["TargetGroupArn"]
        until_visible(
            lambda: self._aws.elbv2(key.scope.region).modify_target_group_attributes(
                TargetGroupArn=arn, Attributes=deregistration_delay(settings)
            ),
            f"target group {arn}",
        )
        return Resource(kind=Kind.TARGET_GROUP, name=key.name, id=arn)

    @activity.defn
    @aws_errors
    def delete_target_group(self, request: DeleteInput) -> Deleted:
        """Refused (retryably, ResourceInUse) while a listener still forwards to it."""
        key = request.key
        elbv2 = self._aws.elbv2(key.scope.region)
        return delete_every(
            request,
            Kind.TARGET_GROUP,
            lambda: _arns(self._find_target_group(key), TARGET_GROUPS),
            lambda arn: elbv2.delete_target_group(TargetGroupArn=arn),
        )

    # Load balancer

    def _find_load_balancer(self, key: ResourceKey) -> dict[str, Any] | None:
        return self._find_owned(key, LOAD_BALANCERS, load_balancer_name(key.scope.deployment_id))

    @activity.defn
    @aws_errors
    def create_load_balancer(self, request: LoadBalancerInput) -> LoadBalancer:
        key = request.key
        region = key.scope.region
        # The security group may be seconds old; AWS answers a repeat (same name and settings) with
        # the same load balancer.
        balancer = earlier(key, lambda: self._find_load_balancer(key)) or until_visible(
            lambda: self._aws.elbv2(region, creates=True).create_load_balancer(
                Name=load_balancer_name(key.scope.deployment_id),
                Subnets=request.subnet_ids,
                SecurityGroups=[request.security_group_id],
                Scheme="internet-facing",
                Type="application",
                IpAddressType="ipv4",
                Tags=tags_for(key),
            )["LoadBalancers"][0],
            f"security group {request.security_group_id}",
        )
        arn = balancer["LoadBalancerArn"]
        wait_for(
            self._aws.elbv2(region),
            "load_balancer_available",
            request.waiting,
            "the load balancer to be active",
            LoadBalancerArns=[arn],
        )
        return LoadBalancer(
            arn=arn,
            dns_name=balancer["DNSName"],
            canonical_hosted_zone_id=balancer.get("CanonicalHostedZoneId"),
        )

    @activity.defn
    @aws_errors
    def delete_load_balancer(self, request: DeleteInput) -> Deleted:
        """Wait until it is gone: until then its security group and target group are in use."""
        key = request.key
        elbv2 = self._aws.elbv2(key.scope.region)
        ids = ids_to_delete(request, lambda: _arns(self._find_load_balancer(key), LOAD_BALANCERS))
        for arn in ids:
            if delete_by_id(request, lambda a=arn: elbv2.delete_load_balancer(LoadBalancerArn=a), arn):
                wait_for(
                    elbv2,
                    "load_balancers_deleted",
                    request.waiting,
                    "the load balancer to be deleted",
                    LoadBalancerArns=[arn],
                )
        return Deleted.of(Kind.LOAD_BALANCER, key.name, ids)

    # Listener

    def _listeners_on(self, region: str, balancer_arn: str, port: int) -> list[dict[str, Any]]:
        listeners = self._aws.elbv2(region).describe_listeners(LoadBalancerArn=balancer_arn)["Listeners"]
        return [lsn for lsn in listeners if lsn["Port"] == port]

    def _listener_on(self, region: str, balancer_arn: str, port: int) -> dict[str, Any] | None:
        return next(iter(self._listeners_on(region, balancer_arn, port)), None)

    def _find_listeners(self, key: ResourceKey, port: int) -> list[str]:
        """Every listener on the port: moto keeps a re-sent CreateListener's twin."""
        balancer = self._find_load_balancer(key)
        if balancer is None:
            return []
        return [
            lsn["ListenerArn"]
            for lsn in self._listeners_on(key.scope.region, balancer["LoadBalancerArn"], port)
        ]

    @activity.defn
    @aws_errors
    def create_listener(self, request: ListenerInput) -> Resource:
        key = request.key
        # On the load balancer the workflow created (and checked to be ours): no second lookup of it.
        listener = earlier(
            key, lambda: self._listener_on(key.scope.region, request.load_balancer_arn, request.port)
        )
        if listener is None:
            listener = until_visible(  # the target group (or the certificate) may be seconds old
                lambda: self._aws.elbv2(key.scope.region, creates=True).create_listener(
                    LoadBalancerArn=request.load_balancer_arn,
                    Port=request.port,
                    DefaultActions=[default_action(request)],
                    Tags=tags_for(key) + [{"Key": k, "Value": v} for k, v in request.tags.items()],
                    **protocol(request),
                )["Listeners"][0],
                f"target group {request.target_group_arn}",
            )
        return Resource(kind=Kind.LISTENER, name=key.name, id=listener["ListenerArn"])

    @activity.defn
    @aws_errors
    def delete_listener(self, request: DeleteInput) -> Deleted:
        key = request.key
        port = int(key.name.rsplit("-", 1)[-1])
        elbv2 = self._aws.elbv2(key.scope.region)
        return delete_every(
            request,
            Kind.LISTENER,
            lambda: self._find_listeners(key, port),
            lambda arn: elbv2.delete_listener(ListenerArn=arn),
        )

    # Targets

    @activity.defn
    @aws_errors
    def register_targets(self, request: RegisterTargetsInput) -> Resource:
        """RegisterTargets is idempotent in AWS itself: registering twice leaves one target."""
        until_visible(
            lambda: self._aws.elbv2(request.key.scope.region, creates=True).register_targets(
                TargetGroupArn=request.target_group_arn,
                Targets=[{"Id": i, "Port": request.port} for i in request.instance_ids],
            ),
            f"target group {request.target_group_arn}",
        )
        return Resource(
            kind=Kind.TARGET_REGISTRATION,
            name=request.key.name,
            id=",".join(request.instance_ids),
        )

    @activity.defn
    @aws_errors
    def deregister_targets(self, request: DeleteInput) -> Deleted:
        key = request.key
        elbv2 = self._aws.elbv2(key.scope.region)
        groups = found_once_settled(request, lambda: _arns(self._find_target_group(key), TARGET_GROUPS))
        targets = []
        for arn in groups:
            health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            found = [d["Target"] for d in health]
            if found:
                ignore_not_found(lambda a=arn, t=found: elbv2.deregister_targets(TargetGroupArn=a, Targets=t))
            targets += found
        return Deleted.of(Kind.TARGET_REGISTRATION, key.name, [t["Id"] for t in targets])

    @activity.defn
    @aws_errors
    def wait_targets_healthy(self, request: TargetsHealthyInput) -> None:
        elbv2 = self._aws.elbv2(request.key.scope.region)
        targets = [{"Id": i, "Port": request.port} for i in request.instance_ids]
        with naming_unhealthy_targets(elbv2, request.target_group_arn, targets):
            wait_for(
                elbv2,
                "target_in_service",
                request.waiting,
                "every target to pass its health check",
                TargetGroupArn=request.target_group_arn,
                Targets=targets,
            )
