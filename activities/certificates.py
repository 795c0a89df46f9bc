"""ACM certificates validated by DNS: request one, wait until ACM has issued it, delete it.

Only certificates this deployment requested carry its tags; one the spec brings (`https.certificate_arn`)
has no step and no compensation, and a delete checks the tags again before it acts, so it is never
deleted. ACM answers `ResourceNotFoundException` (not a `...NotFound` code) for an unknown ARN, also for
a few seconds after RequestCertificate, and publishes the validation record a few seconds after the
request: both are waited for here.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws_clients import AwsClients
from activities.consistency import attempt_deadline, delete_every
from activities.errors import aws_errors, client_error_code
from activities.tags import earlier, owned_by, tag_value, tags_for
from activities.waits import Heartbeats, pause, poll_until
from models.naming import HOSTED_ZONE_TAG, RESOURCE_TAG
from models.resources import (
    Certificate,
    CertificateInput,
    CertificateIssuedInput,
    Deleted,
    DeleteInput,
    DnsRecord,
    Kind,
    ResourceKey,
    Scope,
)

ISSUED = "ISSUED"
REUSABLE = {"PENDING_VALIDATION", ISSUED}
"""A certificate of ours in another state (failed, timed out, revoked) is not used again; a new one is
requested, and the compensation deletes both."""
NOT_FOUND = "ResourceNotFoundException"
PUBLISH_POLL_SECONDS = 0.5
VANISHED_GRACE_SECONDS = 60.0
"""A certificate the wait cannot find for longer than this was deleted, not too new to be seen."""


def idempotency_token(key: ResourceKey, run_id: str) -> str:
    """ACM's token (at most 32 word characters) keeps a re-sent request from making a twin for an
    hour; stable across one run's retries, new for the next run (after a rollback deleted it)."""
    return hashlib.sha256(f"{run_id}:{key.scope.deployment_id}:{key.name}".encode()).hexdigest()[:32]


def is_gone(err: ClientError) -> bool:
    return client_error_code(err) == NOT_FOUND


class CertificateActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    def _acm(self, region: str, *, creates: bool = False) -> Any:
        return self._aws.client("acm", region, creates=creates)

    def owned(self, scope: Scope, domain: str | None = None) -> list[tuple[dict[str, Any], list[dict]]]:
        """The deployment's certificates (summary and tags), of `domain` when given."""
        acm = self._acm(scope.region)
        found = []
        for page in acm.get_paginator("list_certificates").paginate():
            for summary in page["CertificateSummaryList"]:
                if domain is not None and summary.get("DomainName") != domain:
                    continue
                try:
                    tags = acm.list_tags_for_certificate(CertificateArn=summary["CertificateArn"])
                except ClientError as err:
                    if is_gone(err):  # deleted between the list and now
                        continue
                    raise
                if owned_by(tags.get("Tags"), scope):
                    found.append((summary, tags.get("Tags", [])))
        return found

    def owned_if_readable(self, scope: Scope) -> list[tuple[dict[str, Any], list[dict]]]:
        """`owned`, or none for an identity without ACM permissions (a policy from before HTTPS): it
        requested no certificate with this tool either, so an HTTP deployment's read goes on."""
        try:
            return self.owned(scope)
        except ClientError as err:
            if client_error_code(err) == "AccessDeniedException":
                return []
            raise

    def _find(self, key: ResourceKey, domain: str | None = None) -> list[str]:
        return [
            summary["CertificateArn"]
            for summary, tags in self.owned(key.scope, domain)
            if tag_value(tags, RESOURCE_TAG) == key.name
        ]

    def _reusable(self, key: ResourceKey, domain: str) -> str | None:
        for summary, tags in self.owned(key.scope, domain):
            if tag_value(tags, RESOURCE_TAG) == key.name and summary.get("Status") in REUSABLE:
                return summary["CertificateArn"]
        return None

    def describe(self, region: str, arn: str) -> dict[str, Any] | None:
        """The certificate, None when ACM does not know the ARN."""
        try:
            return self._acm(region).describe_certificate(CertificateArn=arn)["Certificate"]
        except ClientError as err:
            if is_gone(err):
                return None
            raise

    @activity.defn
    @aws_errors
    def request_certificate(self, request: CertificateInput) -> Certificate:
        """Find or request the certificate; returns it with the CNAME that validates it."""
        key = request.key
        arn = earlier(key, lambda: self._reusable(key, request.domain))
        if arn is None:
            zone_tag = {"Key": HOSTED_ZONE_TAG, "Value": request.hosted_zone_id}
            arn = self._acm(key.scope.region, creates=True).request_certificate(
                DomainName=request.domain,
                ValidationMethod="DNS",
                IdempotencyToken=idempotency_token(key, activity.info().workflow_run_id),
                Tags=[*tags_for(key), zone_tag],
            )["CertificateArn"]
        record = self._published_record(key.scope.region, arn, request.domain, request.hosted_zone_id)
        return Certificate(arn=arn, validation=record)

    def _published_record(self, region: str, arn: str, domain: str, zone_id: str) -> DnsRecord:
        """ACM fills in the validation record seconds after the request; until then, look again."""
        deadline = attempt_deadline()
        heartbeat = Heartbeats()
        while True:
            record = validation_record(self.describe(region, arn), domain, zone_id)
            if record is not None:
                return record
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"ACM has not published the validation record of {arn} yet",
                    type="NotReady",
                )
            heartbeat(f"waiting for ACM to publish the validation record of {arn}")
            pause(PUBLISH_POLL_SECONDS, f"waiting for ACM to publish the validation record of {arn}")

    @activity.defn
    @aws_errors
    def wait_certificate_issued(self, request: CertificateIssuedInput) -> None:
        """Durable: heartbeats between polls, so another worker takes the wait over after a crash."""
        region, arn = request.key.scope.region, request.certificate_arn
        started = time.monotonic()

        def issued() -> bool:
            certificate = self.describe(region, arn)
            if certificate is None:
                if time.monotonic() - started < VANISHED_GRACE_SECONDS:
                    return False
                raise ApplicationError(
                    f"certificate {arn} no longer exists", type="CertificateGone", non_retryable=True
                )
            status = certificate["Status"]
            if status == ISSUED:
                return True
            if status not in REUSABLE:
                reason = certificate.get("FailureReason", "no reason given")
                raise ApplicationError(
                    f"ACM did not issue {arn}: {status} ({reason}); check that the hosted zone is the "
                    "domain's public zone (its NS records are the ones the registrar lists)",
                    type="CertificateNotIssued",
                    non_retryable=True,
                )
            return False

        poll_until(issued, request.waiting, f"ACM to issue {arn} (it checks the validation CNAME)")

    @activity.defn
    @aws_errors
    def delete_certificate(self, request: DeleteInput) -> Deleted:
        """Refused (ResourceInUseException, retried) while a listener still uses it."""
        key = request.key
        acm = self._acm(key.scope.region)

        def delete(arn: str) -> None:
            try:
                tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
                if owned_by(tags, key.scope):  # never one the user brought
                    acm.delete_certificate(CertificateArn=arn)
            except ClientError as err:
                if not is_gone(err):
                    raise

        return delete_every(request, Kind.CERTIFICATE, lambda: self._find(key), delete)


def validation_record(certificate: dict[str, Any] | None, domain: str, zone_id: str) -> DnsRecord | None:
    """The CNAME that validates `domain`, once ACM has published it."""
    for option in (certificate or {}).get("DomainValidationOptions", []):
        record = option.get("ResourceRecord")
        if option.get("DomainName") == domain and record:
            return DnsRecord(
                zone_id=zone_id, name=record["Name"].lower(), type=record["Type"], value=record["Value"]
            )
    return None
