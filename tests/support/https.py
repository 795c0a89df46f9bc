"""A hosted zone and an HTTPS spec for the tests of the `https` section (on moto)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3

from models.spec import DeploymentSpec
from tests.support.specs import fast_spec

REGION = "ap-northeast-2"
ZONE = "example.com"
DOMAIN = f"api.{ZONE}"


def hosted_zone(name: str = ZONE, *, private: bool = False) -> str:
    """A hosted zone the user owns; its id without the `/hostedzone/` prefix."""
    route53 = boto3.client("route53", region_name=REGION)
    config: dict[str, Any] = {"Comment": "the user's", "PrivateZone": private}
    extra: dict[str, Any] = {}
    if private:
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
        extra["VPC"] = {"VPCRegion": REGION, "VPCId": vpc["VpcId"]}
    zone = route53.create_hosted_zone(
        Name=name, CallerReference=str(uuid.uuid4()), HostedZoneConfig=config, **extra
    )["HostedZone"]
    return zone["Id"].rsplit("/", 1)[-1]


def https_spec(domain: str = DOMAIN, **https: Any) -> DeploymentSpec:
    return fast_spec(https={"domain": domain, **https})


def user_record(zone_id: str, name: str, value: str = "192.0.2.10", type_: str = "A") -> None:
    boto3.client("route53", region_name=REGION).change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": type_,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
            ]
        },
    )
