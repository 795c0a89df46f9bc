"""The HTTPS activities on their own (moto): each create twice is one resource, each delete twice (and of
nothing) succeeds, what is not ours is left alone, and the refusals strict_aws emulates really refuse."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from activities import AwsClients
from activities.certificates import CertificateActivities
from activities.dns import DnsActivities
from models.naming import ALIAS_RECORD, CERTIFICATE, VALIDATION_RECORD
from models.resources import (
    CertificateInput,
    CertificateIssuedInput,
    DeleteInput,
    DnsRecord,
    RecordInput,
    ResourceKey,
    Scope,
    Waiting,
)
from tests.support.attempts import attempt_environment
from tests.support.https import DOMAIN, REGION, hosted_zone, user_record
from tests.support.inventory import inventory
from tests.support.strict_aws import StrictAws

WAIT = Waiting(poll_interval_seconds=0.1, timeout_seconds=10)


def call(fn: Any, arg: Any) -> Any:
    return attempt_environment(waiting=WAIT).run(fn, arg)


@pytest.fixture
def scope() -> Scope:
    return Scope(deployment_id=f"t-{uuid.uuid4().hex[:10]}", region=REGION)


def key(scope: Scope, name: str) -> ResourceKey:
    return ResourceKey(scope=scope, name=name)


def deleting(scope: Scope, name: str, *ids: str) -> DeleteInput:
    return DeleteInput(key=key(scope, name), waiting=WAIT, ids=list(ids))


def test_certificate_twice_is_one_certificate_issued_then_deleted_twice(aws: AwsClients, scope: Scope):
    zone_id = hosted_zone()
    certificates = CertificateActivities(aws)
    before = inventory()
    request = CertificateInput(key=key(scope, CERTIFICATE), domain=DOMAIN, hosted_zone_id=zone_id)
    first, second = (
        call(certificates.request_certificate, request),
        call(certificates.request_certificate, request),
    )
    assert first == second and len(inventory()["certificates"] - before["certificates"]) == 1
    assert first.validation.zone_id == zone_id and first.validation.type == "CNAME"

    call(
        certificates.wait_certificate_issued,
        CertificateIssuedInput(key=request.key, certificate_arn=first.arn, waiting=WAIT),
    )

    assert call(certificates.delete_certificate, deleting(scope, CERTIFICATE, first.arn)).id == first.arn
    assert (
        call(certificates.delete_certificate, deleting(scope, CERTIFICATE, first.arn)).id == first.arn
    )  # by id
    assert call(certificates.delete_certificate, deleting(scope, CERTIFICATE)).id is None
    assert inventory() == before


def test_a_certificate_not_ours_is_never_deleted(aws: AwsClients, scope: Scope):
    acm = boto3.client("acm", region_name=REGION)
    theirs = acm.request_certificate(DomainName=DOMAIN, ValidationMethod="DNS")["CertificateArn"]
    call(CertificateActivities(aws).delete_certificate, deleting(scope, CERTIFICATE, theirs))
    assert acm.describe_certificate(CertificateArn=theirs)["Certificate"]["DomainName"] == DOMAIN


def test_record_twice_is_one_record_deleted_twice_and_someone_elses_is_refused(aws: AwsClients, scope: Scope):
    zone_id = hosted_zone()
    dns = DnsActivities(aws)
    before = inventory()
    record = DnsRecord(zone_id=zone_id, name=f"_x.{DOMAIN}.", type="CNAME", value="_y.acm-validations.aws.")
    request = RecordInput(key=key(scope, VALIDATION_RECORD), record=record)
    assert call(dns.create_record, request) == call(dns.create_record, request) == record
    assert len(inventory()["dns_records"] - before["dns_records"]) == 1

    assert call(dns.delete_record, deleting(scope, VALIDATION_RECORD, record.id)).id == record.id
    assert call(dns.delete_record, deleting(scope, VALIDATION_RECORD, record.id)).id is None
    assert inventory() == before

    user_record(zone_id, f"{DOMAIN}.")
    alias = DnsRecord(
        zone_id=zone_id, name=f"{DOMAIN}.", type="A", value="x-alb-1.ap-northeast-2.elb.amazonaws.com"
    )
    with pytest.raises(Exception, match="already has a record not made by this deployment"):
        call(dns.create_record, RecordInput(key=key(scope, ALIAS_RECORD), record=alias, alias_zone_id="Z1"))
    assert call(dns.delete_record, deleting(scope, ALIAS_RECORD, alias.id)).id is None  # theirs stays
    assert len(inventory()["dns_records"] - before["dns_records"]) == 1


def test_strict_aws_refuses_what_real_aws_refuses(aws: AwsClients, elbv2):
    """A listener with a pending certificate, and deleting a certificate in use: moto accepts both."""
    StrictAws(aws.session)
    strict_elbv2 = aws.session.client("elbv2", region_name=REGION)
    strict_acm = aws.session.client("acm", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    balancer = elbv2.create_load_balancer(
        Name=f"t{uuid.uuid4().hex[:8]}", Subnets=[s["SubnetId"] for s in subnets[:2]]
    )
    arn = balancer["LoadBalancers"][0]["LoadBalancerArn"]
    pending = strict_acm.request_certificate(DomainName=DOMAIN, ValidationMethod="DNS")["CertificateArn"]
    https = {
        "LoadBalancerArn": arn,
        "Protocol": "HTTPS",
        "Port": 443,
        "Certificates": [{"CertificateArn": pending}],
    }
    action = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}]

    with pytest.raises(ClientError, match="UnsupportedCertificate"):
        strict_elbv2.create_listener(**https, DefaultActions=action)

    elbv2.create_listener(**https, DefaultActions=action)  # moto itself takes it
    with pytest.raises(ClientError, match="ResourceInUseException"):
        strict_acm.delete_certificate(CertificateArn=pending)
