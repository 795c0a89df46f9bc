"""What moto holds now, asked with plain boto3 calls: the data plane's source of truth.

Asking moto, rather than parsing each request, keeps one reading of every resource however it was
changed (through the data plane, straight at moto, or by a reset). Calls are made as the account and
region that the observed request used (moto keys its state by both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError

from dataplane.apps import Instance
from dataplane.health import HealthCheck
from dataplane.userdata import app_of, decode

NOT_FOUND = {
    "InvalidInstanceID.NotFound",
    "InvalidInstanceID.Malformed",
    "LoadBalancerNotFound",
    "TargetGroupNotFound",
    "ListenerNotFound",
}


class Account(NamedTuple):
    access_key: str
    region: str


@dataclass(frozen=True)
class Balancer:
    arn: str
    dns_name: str
    account: Account


@dataclass(frozen=True)
class Listener:
    arn: str
    balancer_arn: str
    port: int
    protocol: str
    target_group_arn: str | None
    """The default action's target group (the first, for a weighted forward); None: it forwards nowhere."""
    redirect: Redirect | None = None
    """The default action's redirect to HTTPS, if that is what it does."""
    domain: str | None = None
    """An HTTPS listener's: its ACM certificate's name, for the certificate served locally."""


@dataclass(frozen=True)
class Redirect:
    port: int
    """The listener port it sends clients to (on the same load balancer)."""
    status: int


@dataclass(frozen=True)
class Group:
    arn: str
    account: Account
    port: int
    check: HealthCheck
    deregistration_delay: float
    registered: frozenset[tuple[str, int]]


class MotoView:
    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint
        self._clients: dict[tuple[str, Account], Any] = {}
        self._apps: dict[str, Any] = {}
        """Instance id -> its app (or None): user data does not change while an instance runs."""

    def client(self, service: str, account: Account) -> Any:
        key = (service, account)
        if key not in self._clients:
            self._clients[key] = boto3.session.Session().client(
                service,
                region_name=account.region,
                endpoint_url=self._endpoint,
                aws_access_key_id=account.access_key,
                aws_secret_access_key="dataplane",
                config=Config(
                    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30
                ),
            )
        return self._clients[key]

    def instances(self, account: Account, ids: list[str] | None = None) -> list[Instance]:
        """The instances (all, or those of `ids` that exist)."""
        ec2 = self.client("ec2", account)
        try:
            pages = ec2.get_paginator("describe_instances").paginate(**({"InstanceIds": ids} if ids else {}))
            found = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        except ClientError as err:
            if ids and _code(err) in NOT_FOUND:
                return [i for one in ids for i in self.instances(account, [one])] if len(ids) > 1 else []
            raise
        return [self._instance(ec2, item) for item in found]

    def _instance(self, ec2: Any, item: dict[str, Any]) -> Instance:
        instance_id, state = item["InstanceId"], item["State"]["Name"]
        if instance_id not in self._apps and state in ("pending", "running"):
            answer = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
            self._apps[instance_id] = app_of(decode(answer.get("UserData", {}).get("Value")))
        return Instance(
            id=instance_id,
            state=state,
            availability_zone=item.get("Placement", {}).get("AvailabilityZone", ""),
            private_ip=item.get("PrivateIpAddress"),
            app=self._apps.get(instance_id),
        )

    def balancers(self, account: Account, arns: list[str] | None = None) -> list[Balancer]:
        elbv2 = self.client("elbv2", account)
        try:
            pages = elbv2.get_paginator("describe_load_balancers").paginate(
                **({"LoadBalancerArns": arns} if arns else {})
            )
            found = [b for page in pages for b in page["LoadBalancers"]]
        except ClientError as err:
            if arns and _code(err) in NOT_FOUND:
                return []
            raise
        return [Balancer(b["LoadBalancerArn"], b["DNSName"], account) for b in found]

    def listeners(self, account: Account, balancer_arn: str) -> list[Listener]:
        elbv2 = self.client("elbv2", account)
        try:
            pages = elbv2.get_paginator("describe_listeners").paginate(LoadBalancerArn=balancer_arn)
            found = [lsn for page in pages for lsn in page["Listeners"]]
        except ClientError as err:
            if _code(err) in NOT_FOUND:
                return []
            raise
        return [
            Listener(
                lsn["ListenerArn"],
                balancer_arn,
                lsn["Port"],
                lsn["Protocol"],
                _forwarded(lsn),
                _redirect(lsn),
                self._domain(account, lsn) if lsn["Protocol"] == "HTTPS" else None,
            )
            for lsn in found
        ]

    def _domain(self, account: Account, listener: dict[str, Any]) -> str:
        arn = (listener.get("Certificates") or [{}])[0].get("CertificateArn")
        try:
            certificate = self.client("acm", account).describe_certificate(CertificateArn=arn)["Certificate"]
        except (ClientError, ParamValidationError):
            return "localhost"  # not an ACM certificate moto knows (IAM, or gone): still served
        return certificate.get("DomainName") or "localhost"

    def groups(self, account: Account, arns: list[str] | None = None) -> list[Group]:
        elbv2 = self.client("elbv2", account)
        try:
            pages = elbv2.get_paginator("describe_target_groups").paginate(
                **({"TargetGroupArns": arns} if arns else {})
            )
            found = [g for page in pages for g in page["TargetGroups"]]
            return [self._group(elbv2, account, item) for item in found]
        except ClientError as err:
            if arns and _code(err) in NOT_FOUND:
                return []
            raise

    @staticmethod
    def _group(elbv2: Any, account: Account, item: dict[str, Any]) -> Group:
        arn = item["TargetGroupArn"]
        attributes = elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        delay = next(
            (a["Value"] for a in attributes if a["Key"] == "deregistration_delay.timeout_seconds"), "300"
        )
        health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        check = HealthCheck(
            path=item.get("HealthCheckPath", "/"),
            port=str(item.get("HealthCheckPort", "traffic-port")),
            interval=float(item.get("HealthCheckIntervalSeconds", 30)),
            timeout=float(item.get("HealthCheckTimeoutSeconds", 5)),
            healthy_threshold=int(item.get("HealthyThresholdCount", 5)),
            unhealthy_threshold=int(item.get("UnhealthyThresholdCount", 2)),
            matcher=item.get("Matcher", {}).get("HttpCode", "200"),
            enabled=bool(item.get("HealthCheckEnabled", True)),
        )
        # Asked without ids, moto lists exactly the registered targets (a stopped instance's too).
        registered = frozenset(
            (d["Target"]["Id"], int(d["Target"].get("Port", item.get("Port", 80)))) for d in health
        )
        return Group(arn, account, int(item.get("Port", 80)), check, float(delay), registered)


def _forwarded(listener: dict[str, Any]) -> str | None:
    for action in listener.get("DefaultActions", []):
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            return action["TargetGroupArn"]
        groups = action.get("ForwardConfig", {}).get("TargetGroups", [])
        if groups:
            return groups[0]["TargetGroupArn"]
    return None


def _redirect(listener: dict[str, Any]) -> Redirect | None:
    """A redirect to HTTPS (the only kind the data plane serves); `#{port}` keeps the port."""
    for action in listener.get("DefaultActions", []):
        config = action.get("RedirectConfig", {})
        if action.get("Type") == "redirect" and config.get("Protocol") in ("HTTPS", "#{protocol}"):
            port = config.get("Port", "#{port}")
            status = 301 if config.get("StatusCode", "HTTP_301") == "HTTP_301" else 302
            return Redirect(listener["Port"] if port == "#{port}" else int(port), status)
    return None


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")
