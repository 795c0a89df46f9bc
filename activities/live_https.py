"""Read a deployment's HTTPS resources as its HTTPS steps made them, for the diff (models/diff.py).

The certificate by its tags, its validation record in the zone its tag names, the alias record in the
zone and name the HTTPS listener's tag gives; a record counts only while it still says what the
deployment wrote (activities/dns.py `is_ours`), as `down` finds them (activities/inventory.py). Reads
only: acm:ListCertificates, ListTagsForCertificate, DescribeCertificate and
route53:ListResourceRecordSets, granted by docs/iam-policy-https.json.
"""

from __future__ import annotations

from typing import Any

from activities.aws_clients import AwsClients
from activities.certificates import REUSABLE, CertificateActivities, validation_record
from activities.dns import still_ours
from activities.load_balancing import tags_of
from activities.tags import tag_value
from models.live import LiveResource
from models.naming import ALIAS_RECORD, ALIAS_TAG, HOSTED_ZONE_TAG, RESOURCE_TAG, VALIDATION_RECORD
from models.resources import DnsRecord, Kind, Scope

HTTPS = "HTTPS"


def certificates(aws: AwsClients, scope: Scope) -> list[LiveResource]:
    """The certificates the deployment requested and each one's validation record.

    Only a certificate a retried request would take again (pending validation or issued) is part of
    the deployment: a failed or revoked one is never used again, and `down` deletes it."""
    reader = CertificateActivities(aws)
    owned = reader.owned_if_readable(scope)
    found = []
    for summary, tags in owned:
        if summary.get("Status") not in REUSABLE:
            continue
        arn, domain = summary["CertificateArn"], summary.get("DomainName", "")
        zone_id = tag_value(tags, HOSTED_ZONE_TAG)
        name = tag_value(tags, RESOURCE_TAG) or arn
        found.append(LiveResource(kind=Kind.CERTIFICATE, name=name, id=arn, facts={"domain": domain}))
        record = validation_record(reader.describe(scope.region, arn), domain, zone_id or "")
        if zone_id and record is not None:
            found += _if_ours(aws, scope, VALIDATION_RECORD, record, domain)
    return found


def alias_records(
    aws: AwsClients, scope: Scope, balancer: dict[str, Any], listeners: list[dict[str, Any]]
) -> list[LiveResource]:
    """The alias record each HTTPS listener's tag names, while it still points at the load balancer."""
    elbv2 = aws.elbv2(scope.region)
    found = []
    for listener in listeners:
        if listener.get("Protocol") != HTTPS:
            continue
        where = tag_value(tags_of(elbv2, listener["ListenerArn"]), ALIAS_TAG)
        if where is None:
            continue
        zone_id, domain = where.split("/", 1)
        record = DnsRecord(zone_id=zone_id, name=f"{domain}.", type="A", value=balancer["DNSName"])
        found += _if_ours(aws, scope, ALIAS_RECORD, record, domain)
    return found


def _if_ours(aws: AwsClients, scope: Scope, name: str, record: DnsRecord, domain: str) -> list[LiveResource]:
    if not still_ours(aws.client("route53", scope.region), record):
        return []
    facts = {"domain": domain, "hosted_zone_id": record.zone_id}
    return [LiveResource(kind=Kind.DNS_RECORD, name=name, id=record.id, facts=facts)]
