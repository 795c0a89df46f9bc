"""The whole account as sets of ids, to prove that a rollback or teardown left nothing behind.

It lists everything, not only what carries our tags: a leak of an untagged twin must show too.
"""

from __future__ import annotations

import boto3

REGION = "ap-northeast-2"


def inventory(region: str = REGION) -> dict[str, set[str]]:
    ec2 = boto3.client("ec2", region_name=region)
    elbv2 = boto3.client("elbv2", region_name=region)
    acm = boto3.client("acm", region_name=region)
    balancers = elbv2.describe_load_balancers()["LoadBalancers"]
    instances = [
        i
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return {
        "certificates": {c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]},
        "dns_records": dns_records(),
        "subnets": {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]},
        "addresses": {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]},
        "nat_gateways": {
            n["NatGatewayId"] for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"
        },
        "route_tables": {t["RouteTableId"] for t in ec2.describe_route_tables()["RouteTables"]},
        "security_groups": {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]},
        "security_group_rules": {
            r["SecurityGroupRuleId"] for r in ec2.describe_security_group_rules()["SecurityGroupRules"]
        },
        "instances": {i["InstanceId"] for i in instances},
        "load_balancers": {b["LoadBalancerArn"] for b in balancers},
        "target_groups": {g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]},
        "listeners": {
            lsn["ListenerArn"]
            for b in balancers
            for lsn in elbv2.describe_listeners(LoadBalancerArn=b["LoadBalancerArn"])["Listeners"]
        },
    }


def dns_records() -> set[str]:
    """Every record of every hosted zone (Route 53 is global), as zone/name/type/value."""
    route53 = boto3.client("route53", region_name=REGION)
    found = set()
    for zone in route53.list_hosted_zones()["HostedZones"]:
        records = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
        for item in records:
            target = (item.get("AliasTarget") or {}).get("DNSName")
            values = [target] if target else [r["Value"] for r in item.get("ResourceRecords", [])]
            found.add(f"{zone['Id']}/{item['Name']}/{item['Type']}/{','.join(sorted(values))}")
    return found


def counts(region: str = REGION) -> dict[str, int]:
    return {kind: len(ids) for kind, ids in inventory(region).items()}


def added(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, set[str]]:
    """What exists now that did not before, by kind; empty kinds left out."""
    return {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}
