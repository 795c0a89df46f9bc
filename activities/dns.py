"""Route 53 records in the user's hosted zone: the certificate's validation CNAME and the alias to the ALB.

Records carry no tags. A record is ours when it says what we would have written (the validation value
ACM gave our certificate; an alias to our load balancer's DNS name): a create refuses to overwrite
anything else, and a delete leaves anything else alone. The run knows each record's identity before
its step starts (DnsRecord.id), so rollback deletes by it; `down` learns it from the certificate's tags
and the HTTPS listener's (activities/inventory.py).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws_clients import AwsClients
from activities.certificates import CertificateActivities
from activities.errors import aws_errors, client_error_code
from activities.tags import owned_by
from models.naming import VALIDATION_RECORD
from models.resources import Deleted, DeleteInput, DnsRecord, Kind, RecordInput, Scope

RECORD_TTL = 300


def dns_name(name: str) -> str:
    """Compare names as Route 53 stores them: lowercase, absolute; an ALB's alias target without the
    `dualstack.` prefix the console adds."""
    name = name.lower().rstrip(".") + "."
    return name.removeprefix("dualstack.")


def record_value(item: dict[str, Any]) -> str | None:
    alias = item.get("AliasTarget")
    if alias:
        return dns_name(alias["DNSName"])
    values = [dns_name(r["Value"]) for r in item.get("ResourceRecords", [])]
    return values[0] if len(values) == 1 else None


def describe_record(item: dict[str, Any]) -> str:
    alias = item.get("AliasTarget")
    target = (
        f"alias to {alias['DNSName']}"
        if alias
        else ", ".join(r["Value"] for r in item.get("ResourceRecords", []))
    )
    return f"{item['Type']} {target}"


def is_ours(item: dict[str, Any], record: DnsRecord) -> bool:
    return record_value(item) == dns_name(record.value)


def read_record(route53: Any, zone_id: str, name: str, type_: str) -> dict[str, Any] | None:
    """The record set of this name and type, None when the zone has none."""
    answer = route53.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=name, StartRecordType=type_, MaxItems="1"
    )
    for item in answer["ResourceRecordSets"]:
        if dns_name(item["Name"]) == dns_name(name) and item["Type"] == type_:
            return item
    return None


def still_ours(route53: Any, record: DnsRecord) -> bool:
    """The record exists and still says what the deployment wrote; its zone gone: no."""
    try:
        item = read_record(route53, record.zone_id, dns_name(record.name), record.type)
    except ClientError as err:
        if client_error_code(err) == "NoSuchHostedZone":
            return False
        raise
    return item is not None and is_ours(item, record)


class DnsActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws
        self._certificates = CertificateActivities(aws)

    def _route53(self, region: str, *, creates: bool = False) -> Any:
        return self._aws.client("route53", region, creates=creates)

    @activity.defn
    @aws_errors
    def create_record(self, request: RecordInput) -> DnsRecord:
        """UPSERT the record unless it is there already; refuse to replace someone else's."""
        record, region = request.record, request.key.scope.region
        existing = read_record(self._route53(region), record.zone_id, record.name, record.type)
        if existing is not None and is_ours(existing, record):
            return record
        if existing is not None:
            raise ApplicationError(
                f"{record.name} already has a record not made by this deployment "
                f"({describe_record(existing)}); remove it or choose another https.domain",
                type="RecordTaken",
                non_retryable=True,
            )
        item: dict[str, Any] = {"Name": record.name, "Type": record.type}
        if request.alias_zone_id:
            item["AliasTarget"] = {
                "HostedZoneId": request.alias_zone_id,
                "DNSName": record.value,
                "EvaluateTargetHealth": False,
            }
        else:
            item |= {"TTL": RECORD_TTL, "ResourceRecords": [{"Value": record.value}]}
        self._route53(region, creates=True).change_resource_record_sets(
            HostedZoneId=record.zone_id,
            ChangeBatch={
                "Comment": f"scaleout {request.key.scope.deployment_id} {request.key.name}",
                "Changes": [{"Action": "UPSERT", "ResourceRecordSet": item}],
            },
        )
        return record

    @activity.defn
    @aws_errors
    def delete_record(self, request: DeleteInput) -> Deleted:
        """Delete each record the request names, if it still says what we wrote.

        A validation CNAME that another certificate (not this deployment's) also validates with is
        left: ACM gives every certificate of one domain in an account the same record, and the
        other certificate's renewal needs it."""
        key = request.key
        route53 = self._route53(key.scope.region)
        deleted = []
        for record in map(DnsRecord.parse, request.ids):
            existing = read_record(route53, record.zone_id, record.name, record.type)
            if existing is None or not is_ours(existing, record):
                continue
            if key.name == VALIDATION_RECORD and self._validates_another(key.scope, record):
                continue
            try:
                route53.change_resource_record_sets(
                    HostedZoneId=record.zone_id,
                    ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": existing}]},
                )
            except ClientError as err:
                # Gone between the read and the delete; anything else stands.
                if client_error_code(err) != "InvalidChangeBatch" or read_record(
                    route53, record.zone_id, record.name, record.type
                ):
                    raise
            deleted.append(record.id)
        return Deleted.of(Kind.DNS_RECORD, key.name, deleted)

    def _validates_another(self, scope: Scope, record: DnsRecord) -> bool:
        domain = dns_name(record.name).split(".", 1)[1].rstrip(".")
        acm = self._aws.client("acm", scope.region)
        for page in acm.get_paginator("list_certificates").paginate():
            for summary in page["CertificateSummaryList"]:
                if summary.get("DomainName") != domain:
                    continue
                arn = summary["CertificateArn"]
                try:
                    if owned_by(acm.list_tags_for_certificate(CertificateArn=arn).get("Tags"), scope):
                        continue
                except ClientError as err:
                    if client_error_code(err) == "ResourceNotFoundException":
                        continue
                    raise
                certificate = self._certificates.describe(scope.region, arn) or {}
                for option in certificate.get("DomainValidationOptions", []):
                    name = (option.get("ResourceRecord") or {}).get("Name", "")
                    if dns_name(name) == dns_name(record.name):
                        return True
        return False
