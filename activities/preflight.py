"""Read-only checks of the account against the spec, before anything is created.

Every problem found becomes one line with its fix, and all of them are reported at once: a user who
fixes one problem should not discover the next one only on the following run.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws_clients import AwsClients
from activities.compute import root_device
from activities.errors import aws_errors, client_error_code, is_not_found
from activities.https_checks import check_https
from activities.load_balancing import LOAD_BALANCERS, TARGET_GROUPS, find_by_name, tags_of
from activities.tags import owned_by, tag_value
from models.naming import DEPLOYMENT_TAG, RESOURCE_TAG, load_balancer_name, private_subnet, target_group_name
from models.resources import PreflightInput, PreflightResult, Scope
from models.spec import DeploymentSpec, NatMode

T = TypeVar("T")

EXISTING_LISTED = 20
"""At most this many of a deployment's EC2 resources are listed in the preflight result: whether there
are any is what the creates need to know; the ids are for the reader of the history."""
FACTS_FRESH_SECONDS = 300.0
"""How long a worker trusts what it learnt of the region's zones, instance type offerings and AMI."""


class PreflightFailed(Exception):
    """A problem that stops the remaining checks (no VPC to check against)."""


class Facts:
    """Answers that do not change from one deployment to the next (zones, offerings, the AMI), kept
    for a few minutes: a worker starting 50 deployments asks once, not 50 times.
    Only answers that found what was asked for are kept, so a fixed problem is seen at once; what
    changes with every deployment (subnets, addresses, names) is always asked afresh."""

    def __init__(self, seconds: float = FACTS_FRESH_SECONDS) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self._kept: dict[tuple[Any, ...], tuple[float, Any]] = {}

    def get(self, key: tuple[Any, ...], ask: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and now < kept[0]:
            return kept[1]
        answer = ask()
        if answer:
            with self._lock:
                self._kept[key] = (now + self._seconds, answer)
        return answer

    def forget(self) -> None:
        """As after a restart (the fault matrix fails each call of a fresh worker)."""
        with self._lock:
            self._kept.clear()


FACTS = Facts()
"""The worker process's; keys start with the client that asked (its account, region and endpoint)."""


class PreflightActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    @activity.defn
    @aws_errors
    def preflight(self, request: PreflightInput) -> PreflightResult:
        problems, result = self.check(request.spec)
        if problems or result is None:
            raise ApplicationError(
                "preflight found problems, nothing was created:\n- " + "\n- ".join(problems),
                type="PreflightFailed",
                non_retryable=True,
            )
        return result

    def check(self, spec: DeploymentSpec) -> tuple[list[str], PreflightResult | None]:
        """Every problem as one line with its fix; the facts the deployment needs when there are none."""
        ec2 = self._aws.ec2(spec.region)
        try:
            vpc = self._vpc(ec2, spec)
        except PreflightFailed as err:
            return [str(err)], None
        problems: list[str] = []
        vpc_cidrs = [
            ipaddress.IPv4Network(block["CidrBlock"])
            for block in vpc.get("CidrBlockAssociationSet", [{"CidrBlock": vpc["CidrBlock"]}])
        ]
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
        subnets = subnets["Subnets"]
        scope = Scope(deployment_id=spec.deployment_id, region=spec.region)

        zones = FACTS.get(
            (ec2, "zones"),
            lambda: {
                zone["ZoneName"]
                for zone in ec2.describe_availability_zones()["AvailabilityZones"]
                if zone.get("State", "available") == "available"
            },
        )
        for az in spec.availability_zones:
            if az not in zones:
                problems.append(
                    f"availability zone {az} does not exist in {spec.region} "
                    f"(available: {', '.join(sorted(zones))}); change private_subnets"
                )
        problems += _cidr_problems(spec, vpc["VpcId"], vpc_cidrs, subnets, scope)
        public = _public_subnets(spec, subnets, scope)
        known = [az for az in spec.availability_zones if az in zones]  # a missing AZ is one problem
        for az in known:
            if az not in public:
                problems.append(
                    f"no public subnet in {az} of {vpc['VpcId']} for the load balancer and NAT "
                    "gateway; create one (MapPublicIpOnLaunch, route to an internet gateway)"
                )
        ami_id, root_device_name = self._ami(spec, problems)
        problems += self._instance_type_problems(spec, known)
        problems += self._address_quota_problems(spec, scope)
        name_problems, named = self._names(spec, scope)
        problems += name_problems
        https = check_https(self._aws, spec, scope)
        problems += https.problems
        result = PreflightResult(
            vpc_id=vpc["VpcId"],
            vpc_cidr=str(vpc_cidrs[0]),
            public_subnet_ids=public,
            ami_id=ami_id,
            root_device_name=root_device_name,
            existing=[*self._tagged(ec2, scope), *named, *https.existing],
            hosted_zone_id=https.hosted_zone_id,
        )
        return problems, result

    def _vpc(self, ec2: Any, spec: DeploymentSpec) -> dict[str, Any]:
        if spec.vpc_id:
            try:
                vpcs = ec2.describe_vpcs(VpcIds=[spec.vpc_id])["Vpcs"]
            except ClientError as err:
                if not is_not_found(err):
                    raise
                vpcs = []
            if not vpcs:
                raise PreflightFailed(f"VPC {spec.vpc_id} does not exist in {spec.region}; fix vpc_id")
            return vpcs[0]
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise PreflightFailed(
                f"{spec.region} has no default VPC; set vpc_id, or create one with "
                "'aws ec2 create-default-vpc'"
            )
        return vpcs[0]

    def _ami(self, spec: DeploymentSpec, problems: list[str]) -> tuple[str, str | None]:
        """The AMI's id and root device name."""
        ami_id = spec.instances.ami_id
        if ami_id is None:
            ssm = self._aws.ssm(spec.region)
            try:
                ami_id = FACTS.get(
                    (ssm, "ami parameter", spec.instances.ami_parameter),
                    lambda: ssm.get_parameter(Name=spec.instances.ami_parameter)["Parameter"]["Value"],
                )
            except ClientError as err:
                if not is_not_found(err):
                    raise  # throttling or permissions: classified, not reported as a missing AMI
                problems.append(
                    f"cannot resolve the AMI from SSM parameter {spec.instances.ami_parameter} "
                    f"({err.response['Error'].get('Code')}); set instances.ami_id"
                )
                return "", None
        ec2 = self._aws.ec2(spec.region)
        try:
            images = FACTS.get(
                (ec2, "image", ami_id), lambda: ec2.describe_images(ImageIds=[ami_id])["Images"]
            )
        except ClientError as err:
            if not (is_not_found(err) or client_error_code(err) == "InvalidAMIID.Malformed"):
                raise
            images = []
        if not images:
            problems.append(f"AMI {ami_id} does not exist in {spec.region}; fix instances.ami_id")
            return ami_id, None
        return ami_id, root_device(images[0])

    def _instance_type_problems(self, spec: DeploymentSpec, zones: list[str]) -> list[str]:
        ec2 = self._aws.ec2(spec.region)
        offered = FACTS.get(
            (ec2, "offered", spec.instances.instance_type),
            lambda: {
                offering["Location"]
                for offering in ec2.describe_instance_type_offerings(
                    LocationType="availability-zone",
                    Filters=[{"Name": "instance-type", "Values": [spec.instances.instance_type]}],
                )["InstanceTypeOfferings"]
            },
        )
        return [
            f"instance type {spec.instances.instance_type} is not offered in {az}; choose "
            "another instances.instance_type or another AZ"
            for az in zones
            if az not in offered
        ]

    def _address_quota_problems(self, spec: DeploymentSpec, scope: Scope) -> list[str]:
        ec2 = self._aws.ec2(spec.region)
        attributes = ec2.describe_account_attributes(AttributeNames=["vpc-max-elastic-ips"])
        limit = next(
            (
                int(a["AttributeValues"][0]["AttributeValue"])
                for a in attributes["AccountAttributes"]
                if a["AttributeName"] == "vpc-max-elastic-ips"
            ),
            None,
        )
        if limit is None:
            return []
        addresses = ec2.describe_addresses()["Addresses"]
        ours = sum(1 for a in addresses if owned_by(a.get("Tags"), scope))
        needed = (1 if spec.nat_mode is NatMode.SINGLE else len(spec.availability_zones)) - ours
        free = limit - len(addresses)
        if needed > free:
            return [
                f"the Elastic IP quota ({limit}) leaves {free} free but {needed} are needed; "
                "release unused addresses or request a higher quota"
            ]
        return []

    @staticmethod
    def _tagged(ec2: Any, scope: Scope) -> list[str]:
        """The deployment's EC2 resources (of every kind: one call), from earlier runs or attempts."""
        filters = [
            {"Name": "key", "Values": [DEPLOYMENT_TAG]},
            {"Name": "value", "Values": [scope.deployment_id]},
        ]
        tags = ec2.describe_tags(Filters=filters, MaxResults=EXISTING_LISTED)["Tags"]
        return sorted({tag["ResourceId"] for tag in tags})

    def _names(self, spec: DeploymentSpec, scope: Scope) -> tuple[list[str], list[str]]:
        """ALB and target group names are unique per account and region: free, or already ours.

        Returns the problems, and the ARNs of those that are ours already."""
        elbv2 = self._aws.elbv2(spec.region)
        problems, ours = [], []
        for what, lookup, name in (
            ("load balancer", LOAD_BALANCERS, load_balancer_name(spec.deployment_id)),
            ("target group", TARGET_GROUPS, target_group_name(spec.deployment_id)),
        ):
            existing = find_by_name(elbv2, lookup, name)
            if existing is None:
                continue
            arn = existing[lookup.arn_field]
            if owned_by(tags_of(elbv2, arn), scope):
                ours.append(arn)
            else:
                problems.append(
                    f"the {what} name {name} is taken by {arn}, which is not this deployment's; "
                    "choose another deployment_id"
                )
        return problems, ours


def _cidr_problems(
    spec: DeploymentSpec,
    vpc_id: str,
    vpc_cidrs: list[ipaddress.IPv4Network],
    subnets: list[dict[str, Any]],
    scope: Scope,
) -> list[str]:
    problems = []
    for wanted in spec.private_subnets:
        if not any(wanted.cidr.subnet_of(cidr) for cidr in vpc_cidrs):
            problems.append(
                f"private subnet {wanted.cidr} is outside {vpc_id} "
                f"({', '.join(map(str, vpc_cidrs))}); choose a range inside it"
            )
        ours = private_subnet(wanted.availability_zone)
        for existing in subnets:
            if owned_by(existing.get("Tags"), scope) and _resource(existing) == ours:
                continue
            if wanted.cidr.overlaps(ipaddress.IPv4Network(existing["CidrBlock"])):
                problems.append(
                    f"private subnet {wanted.cidr} overlaps existing subnet "
                    f"{existing['SubnetId']} ({existing['CidrBlock']}); choose a free range"
                )
    return problems


def _resource(subnet: dict[str, Any]) -> str | None:
    return tag_value(subnet.get("Tags"), RESOURCE_TAG)


def _public_subnets(spec: DeploymentSpec, subnets: list[dict[str, Any]], scope: Scope) -> dict[str, str]:
    """The default subnet of each AZ, else one that gives instances public IPs."""
    public: dict[str, str] = {}
    candidates = [s for s in subnets if not owned_by(s.get("Tags"), scope)]
    candidates.sort(key=lambda s: (not s.get("DefaultForAz"), s["SubnetId"]))
    for subnet in candidates:
        az = subnet["AvailabilityZone"]
        is_public = subnet.get("DefaultForAz") or subnet.get("MapPublicIpOnLaunch")
        if is_public and az in spec.availability_zones and az not in public:
            public[az] = subnet["SubnetId"]
    return public
