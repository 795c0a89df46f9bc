"""Preflight for `https`: the hosted zone, the domain's records and the certificate, before anything is made.

Part of preflight (and so of `plan` and of `up` before its first create): each problem is one line with
its fix. The zone found here is the one the deployment writes its records to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from activities.aws_clients import AwsClients
from activities.certificates import ISSUED, CertificateActivities
from activities.dns import describe_record, dns_name, read_record
from activities.errors import client_error_code
from models.naming import load_balancer_name
from models.resources import Scope
from models.spec import DeploymentSpec


@dataclass
class HttpsFacts:
    hosted_zone_id: str | None = None
    problems: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    """ARNs of certificates this deployment requested before (for the creates' `known_new`)."""


def holds(zone_name: str, domain: str) -> bool:
    zone, name = dns_name(zone_name), dns_name(domain)
    return name == zone or name.endswith("." + zone)


def covers(names: list[str], domain: str) -> bool:
    """A certificate name covers the domain exactly, or as a wildcard one label up."""
    parent = domain.split(".", 1)[1] if "." in domain else ""
    return any(n.lower() == domain or n.lower() == f"*.{parent}" for n in names)


def our_alias(item: dict[str, Any], deployment_id: str) -> bool:
    """An alias to a load balancer with this deployment's name (its DNS name starts with it)."""
    target = (item.get("AliasTarget") or {}).get("DNSName", "")
    return dns_name(target).startswith(f"{load_balancer_name(deployment_id)}-")


def check_https(aws: AwsClients, spec: DeploymentSpec, scope: Scope) -> HttpsFacts:
    https = spec.https
    facts = HttpsFacts()
    if https is None:
        return facts
    route53 = aws.client("route53", spec.region)
    zone = _zone(route53, https.domain, https.hosted_zone_id, facts.problems)
    if zone is not None:
        facts.hosted_zone_id = zone["Id"].rsplit("/", 1)[-1]
        facts.problems += _conflicts(route53, facts.hosted_zone_id, https.domain, spec.deployment_id)
    if https.certificate_arn is not None:
        facts.problems += _certificate_problems(aws, spec)
    else:
        certificates = CertificateActivities(aws).owned(scope, https.domain)
        facts.existing = [summary["CertificateArn"] for summary, _ in certificates]
    return facts


def _zone(route53: Any, domain: str, zone_id: str | None, problems: list[str]) -> dict[str, Any] | None:
    if zone_id is None:
        zones = [
            zone
            for page in route53.get_paginator("list_hosted_zones").paginate()
            for zone in page["HostedZones"]
            if not zone.get("Config", {}).get("PrivateZone") and holds(zone["Name"], domain)
        ]
        if not zones:
            problems.append(
                f"no public Route 53 hosted zone in this account holds {domain}; create one (and point "
                "the registrar's name servers at it) or set https.hosted_zone_id"
            )
            return None
        return max(zones, key=lambda z: len(z["Name"]))
    try:
        zone = route53.get_hosted_zone(Id=zone_id)["HostedZone"]
    except ClientError as err:
        if client_error_code(err) not in ("NoSuchHostedZone", "InvalidInput"):
            raise
        problems.append(
            f"hosted zone {zone_id} does not exist in this account; fix https.hosted_zone_id, or leave "
            "it unset to use the zone that holds the domain"
        )
        return None
    name = dns_name(zone["Name"]).rstrip(".")
    if zone.get("Config", {}).get("PrivateZone"):
        problems.append(
            f"hosted zone {zone_id} ({name}) is private: ACM validates, and clients resolve, through "
            "public DNS; use the domain's public zone"
        )
        return None
    if not holds(name, domain):
        problems.append(
            f"https.domain {domain} is outside hosted zone {zone_id} ({name}); use a name in {name} or "
            "the zone that holds the domain"
        )
        return None
    return zone


def _conflicts(route53: Any, zone_id: str, domain: str, deployment_id: str) -> list[str]:
    """A record at the domain that the alias record would replace, unless it is our own alias."""
    problems = []
    for type_ in ("A", "CNAME"):
        item = read_record(route53, zone_id, domain, type_)
        if item is not None and not (type_ == "A" and our_alias(item, deployment_id)):
            problems.append(
                f"{domain} already has a record not made by this deployment ({describe_record(item)}); "
                "delete it or choose another https.domain"
            )
    return problems


def _certificate_problems(aws: AwsClients, spec: DeploymentSpec) -> list[str]:
    https = spec.https
    assert https is not None and https.certificate_arn is not None
    certificate = CertificateActivities(aws).describe(spec.region, https.certificate_arn)
    if certificate is None:
        return [
            f"https.certificate_arn {https.certificate_arn} does not exist in {spec.region}; fix it, or "
            "leave it unset to have a certificate requested"
        ]
    problems = []
    if certificate["Status"] != ISSUED:
        problems.append(
            f"certificate {https.certificate_arn} is {certificate['Status']}, not ISSUED: an HTTPS "
            "listener needs an issued certificate; finish its validation or leave certificate_arn unset"
        )
    names = [certificate.get("DomainName", ""), *certificate.get("SubjectAlternativeNames", [])]
    if not covers(names, https.domain):
        problems.append(
            f"certificate {https.certificate_arn} covers {', '.join(sorted(set(names)))}, not "
            f"{https.domain}; choose a certificate for the domain"
        )
    return problems
