"""AWS error classification, in one place: retry what time can fix, fail fast on what a person must fix.

Temporal retries an activity on any exception unless it is an `ApplicationError(non_retryable=True)`, so
every AWS error leaves an activity through `aws_errors`, which says which it is and how to act on it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    WaiterError,
)
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

P = ParamSpec("P")
R = TypeVar("R")

RETRYABLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "DependencyViolation",
        "ResourceInUse",
        "ResourceInUseException",  # ACM: a certificate a listener still uses (or used seconds ago)
        "PriorRequestNotComplete",  # Route 53: changes to one zone sent too fast
        "IncorrectState",
        "InvalidGroup.InUse",
        "InvalidNetworkInterface.InUse",
    }
)
"""Codes that pass by themselves: throttling, AWS-side faults, and deletes whose dependants are going."""

DUPLICATE_CODES = frozenset(
    {
        "InvalidSubnet.Conflict",
        "InvalidGroup.Duplicate",
        "DuplicateTargetGroupName",
        "DuplicateLoadBalancerName",
        "Resource.AlreadyAssociated",  # CreateNatGateway: our address, taken by our own lost-reply NAT
    }
)
"""On a retry these may be our own earlier create, whose reply was lost and which the lookup did not
see yet (EC2 describes are eventually consistent): retry, and the next lookup finds it."""

NOT_YET_VISIBLE = frozenset(
    {
        "InvalidSubnetID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidAllocationID.NotFound",
        "InvalidRouteTableID.NotFound",
        "InvalidNatGatewayID.NotFound",
        "NatGatewayNotFound",
        "InvalidInstanceID.NotFound",
        "InvalidAssociationID.NotFound",
        "InvalidSecurityGroupRuleId.NotFound",
        "TargetGroupNotFound",
        "LoadBalancerNotFound",
        "ListenerNotFound",
        "SubnetNotFound",  # ELBv2 naming an EC2 subnet
        "InvalidSecurityGroup",  # ELBv2 naming an EC2 security group
        "InvalidTarget",  # ELBv2 RegisterTargets naming an instance
        "CertificateNotFound",  # ELBv2 CreateListener naming a certificate ACM issued seconds ago
    }
)
"""What AWS answers for an id it does not know yet. Not the AMI, VPC or public subnets' codes: those
were checked by preflight, and a NotFound for them is a person's to fix, at once."""

IN_USE_BY_OPERATION = {
    ("ReleaseAddress", "AuthFailure"): "the address is still held by a NAT gateway being deleted; "
    "AWS lets go of it a little after the gateway is gone",
}
"""(operation, code) pairs that mean "still in use" for that call only: retryable, not a person's fault.
Real AWS answers ReleaseAddress with AuthFailure, not InvalidIPAddress.InUse, while the address is on a
NAT gateway's interface, and for a moment after the gateway shows `deleted` (kops, openshift-install and
leftovers hit it). The activity found the address with the same credentials first, so credentials are fine."""

ADVICE = {
    "UnauthorizedOperation": "grant the worker's IAM identity this action (see README, 'Permissions')",
    "AccessDenied": "grant the worker's IAM identity this action (see README, 'Permissions')",
    "AccessDeniedException": "grant the worker's IAM identity this action (see README, 'Permissions')",
    "AuthFailure": "check the AWS credentials the worker uses",
    "AddressLimitExceeded": "release unused Elastic IPs or ask AWS for a higher quota",
    "InstanceLimitExceeded": "ask AWS for a higher instance quota or deploy fewer instances",
    "VcpuLimitExceeded": "ask AWS for a higher vCPU quota or deploy fewer instances",
    "InvalidSubnet.Conflict": "choose a private subnet CIDR that no existing subnet uses",
    "InvalidSubnet.Range": "choose a private subnet CIDR inside the VPC's range",
    "InvalidAMIID.NotFound": "set instances.ami_id to an AMI that exists in this region",
    "InvalidAMIID.Malformed": "set instances.ami_id to a valid AMI id",
    "DuplicateLoadBalancerName": "choose another deployment_id: this name is taken",
    "DuplicateTargetGroupName": "choose another deployment_id: this name is taken",
    "TooManyLoadBalancers": "delete unused load balancers or ask AWS for a higher quota",
    "Unsupported": "choose availability zones that offer this instance type",
    "UnsupportedCertificate": "use an ISSUED certificate of the deployment's region that covers the domain",
    "InvalidChangeBatch": "check the hosted zone's records for the domain (plan lists conflicts)",
    "SSLPolicyNotFound": "set https.ssl_policy to a policy `aws elbv2 describe-ssl-policies` lists",
}


class NotReadyError(Exception):
    """A waited-on resource has not reached its state yet; retryable by design."""


def client_error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "Unknown"))


def is_retryable(err: ClientError) -> bool:
    code = client_error_code(err)
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
    if code in DUPLICATE_CODES:
        return activity.in_activity() and activity.info().attempt > 1
    if (getattr(err, "operation_name", None), code) in IN_USE_BY_OPERATION:
        return True
    return code in RETRYABLE_CODES or status >= 500


def describe(err: ClientError) -> str:
    code = client_error_code(err)
    message = err.response.get("Error", {}).get("Message", "")
    operation = getattr(err, "operation_name", "the AWS call")
    text = f"{operation} failed: {code}: {message}".rstrip(": ")
    in_use = IN_USE_BY_OPERATION.get((operation, code))
    if in_use:
        return f"{text} ({in_use})"
    advice = ADVICE.get(code)
    return f"{text}. To fix: {advice}." if advice else text


def classify(err: Exception) -> ApplicationError:
    """Turn an AWS-side exception into an ApplicationError that says whether to retry."""
    if isinstance(err, ClientError):
        return ApplicationError(
            describe(err), type=client_error_code(err), non_retryable=not is_retryable(err)
        )
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return ApplicationError(
            "no AWS credentials found for the worker; configure the standard AWS chain "
            "(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role)",
            type="NoCredentials",
            non_retryable=True,
        )
    if isinstance(err, NoRegionError):
        return ApplicationError("no AWS region set", type="NoRegion", non_retryable=True)
    # HTTPClientError: a connection closed or timed out mid-reply (ConnectionClosedError, ReadTimeoutError)
    if isinstance(err, EndpointConnectionError | ConnectionError | HTTPClientError):
        return ApplicationError(f"cannot reach AWS: {err}", type="ConnectionError")
    if isinstance(err, WaiterError):
        return ApplicationError(f"{err}", type="WaiterFailure", non_retryable=True)
    raise TypeError(f"not an AWS error: {err!r}")


AWS_EXCEPTIONS = (
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
    EndpointConnectionError,
    ConnectionError,
    HTTPClientError,
    WaiterError,
)


def aws_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate an activity so every AWS error leaves it classified."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except AWS_EXCEPTIONS as err:
            cancelled = getattr(err, "kwargs", {}).get("error")
            if isinstance(cancelled, CancelledError | asyncio.CancelledError):
                # The SDK cancels a threaded activity by raising in its thread; mid-request, botocore
                # wraps that as an HTTP client error. It is the cancellation, not AWS unreachable.
                raise cancelled from None
            # Not chained: the workflow reports the innermost cause, and this message is the one that
            # names the operation, AWS's code and the fix (the raw botocore text has neither advice
            # nor, for waiters, the operation).
            raise classify(err) from None

    return wrapper


def not_yet_visible(err: ClientError) -> bool:
    """AWS does not know the id yet, or no longer: which of the two only time tells."""
    return client_error_code(err) in NOT_YET_VISIBLE


def is_not_found(err: ClientError) -> bool:
    """`InvalidVpcID.NotFound`, `ParameterNotFound`, `LoadBalancerNotFound`, ...: the thing is absent."""
    return client_error_code(err).endswith("NotFound")


def ignore_not_found(call: Callable[[], object]) -> None:
    """Deletes are idempotent: a resource that is already gone is what we wanted."""
    try:
        call()
    except ClientError as err:
        if not is_not_found(err):
            raise
