"""The deployment spec: the tutorial's choices as defaults, every field validated before anything is created.

Everything a user can get wrong is caught here with a message that names the field and the fix; what
can only be checked against the account (the VPC's real CIDR, existing subnets, AMI) is checked by the
preflight activity, still before anything is created.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.naming import DEFAULT_APP_VERSION, MAX_DEPLOYMENT_ID_LENGTH

DEFAULT_VPC_CIDR = ipaddress.IPv4Network("172.31.0.0/16")
"""AWS creates every default VPC with this CIDR, so a spec without `vpc_id` can be checked offline."""

DEPLOYMENT_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
AZ_PATTERN = re.compile(r"^(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)[a-z]$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(?:-gov)?-[a-z]+-\d$")
TAG_PUNCTUATION = "_.:/=+-@"
MAX_USER_TAGS = 46
"""AWS allows 50 tags per resource; the project adds up to 4 (Name, deployment, resource, group)."""
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
DEFAULT_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
"""AWS's recommended policy for ALB HTTPS listeners (TLS 1.3 and 1.2): the console's default."""
DOMAIN_PATTERN = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)
CERTIFICATE_ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:acm:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d):\d{12}:certificate/[0-9a-f-]{36}$"
)

Port = Annotated[int, Field(ge=1, le=65535)]
MAX_SECONDS = 365 * 24 * 3600.0
"""Timing settings become Temporal timeouts (Python timedeltas): infinity, NaN or 1e300 would stall the
run on a workflow task that cannot encode or compute them, so they are refused with the spec."""
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
CALL_SHARE_OF_START_TO_CLOSE = 0.5
CALL_SHARE_OF_HEARTBEAT = 0.25
"""One AWS call (its connect and read timeouts times botocore's attempts, plus botocore's backoff
between them) may take this share of its activity attempt's start-to-close and heartbeat timeouts, so
no call outlives its attempt: a call still running when Temporal starts the next attempt would race it
(two attempts of one create: twins). A step that waits makes up to three calls before its first
heartbeat (look up, create, first poll), hence a quarter; activities/aws_clients.py derives each
client's timeouts from these shares."""
MIN_CALL_SECONDS = 0.5
"""Less time than this for one call is too little even for a local stand-in (real AWS wants seconds)."""


def call_budget_seconds(start_to_close: float | None, heartbeat: float | None) -> float | None:
    """How long one AWS call may take in an activity attempt with these timeouts; None: no bound."""
    shares = [start_to_close * CALL_SHARE_OF_START_TO_CLOSE] if start_to_close else []
    shares += [heartbeat * CALL_SHARE_OF_HEARTBEAT] if heartbeat else []
    return min(shares, default=None)


DURATION_PATTERN = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> Any:
    """`90s`, `10m`, `2h`, `1d`, `1h30m`, or a number of seconds; anything else (a timedelta, an ISO
    8601 `PT2H` as the workflow's payloads carry it) is left to pydantic."""
    if isinstance(value, str) and value.strip() and not value.strip().upper().startswith("P"):
        text = value.strip().lower()
        if text.replace(".", "", 1).isdigit():
            return timedelta(seconds=float(text))
        match = DURATION_PATTERN.match(text)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 10m, 2h, 1d or 1h30m")
        return timedelta(seconds=sum(int(n) * DURATION_UNITS[u] for u, n in match.groupdict().items() if n))
    return value


def _within_a_year(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    if value.total_seconds() > MAX_SECONDS:
        raise ValueError("at most a year (365d)")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A length of time in a spec or on the command line (`ttl: 2h`, `drift.check_every: 10m`)."""


def duration_text(value: timedelta) -> str:
    """`2h`, `1h30m`, `45s`: as a user writes it."""
    seconds, parts = int(value.total_seconds()), []
    for unit, size in DURATION_UNITS.items():
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


class Strict(BaseModel):
    """Unknown fields are typos, not extensions: reject them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NatMode(StrEnum):
    SINGLE = "single"
    """One NAT gateway in the first AZ for every private subnet (the tutorial; cheapest)."""
    PER_AZ = "per_az"
    """One NAT gateway and route table per AZ (survives an AZ outage)."""


class OnFailure(StrEnum):
    ROLLBACK = "rollback"
    """Undo everything the run created, newest first (the default)."""
    PAUSE = "pause"
    """Keep what exists and wait for `starter.py retry ID` or `starter.py rollback ID`."""
    KEEP = "keep"
    """End FAILED and leave everything for inspection; `starter.py down ID` removes it later."""


class OnDrift(StrEnum):
    REPORT = "report"
    """Mark the deployment drifted (status, UI, the DeploymentDrift search attribute); change nothing."""
    REPAIR = "repair"
    """Converge back to the spec, with a change's guarantees (zero downtime, rollback if it fails)."""


class DriftSpec(Strict):
    """How the deployment's workflow watches for changes made outside it (`starter.py check`)."""

    check_every: Duration = Field(
        timedelta(minutes=10), description="Between two drift checks; 0 turns the checks off."
    )
    on_drift: OnDrift = Field(OnDrift.REPORT, description="`report` (default) or `repair`.")

    @field_validator("check_every")
    @classmethod
    def _check_every(cls, value: timedelta) -> timedelta:
        value = _within_a_year(value)
        if timedelta(0) < value < timedelta(seconds=1):
            raise ValueError("at least 1s between checks (0 turns them off)")
        return value


class PrivateSubnetSpec(Strict):
    cidr: ipaddress.IPv4Network = Field(description="CIDR of the private subnet, inside the VPC.")
    availability_zone: str = Field(description="AZ of the subnet, e.g. ap-northeast-2a.")

    @field_validator("cidr", mode="before")
    @classmethod
    def _strict_cidr(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                ipaddress.IPv4Network(value, strict=True)
            except ValueError as err:
                raise ValueError(
                    f"{value!r} is not an IPv4 network in CIDR form (e.g. 172.31.112.0/20): {err}"
                ) from None
        return value

    @field_validator("availability_zone")
    @classmethod
    def _az_shape(cls, value: str) -> str:
        if not AZ_PATTERN.match(value):
            raise ValueError(f"{value!r} is not an availability zone name (e.g. ap-northeast-2a)")
        return value


class InstancesSpec(Strict):
    count: int = Field(2, ge=1, le=20, description="Instances, spread round-robin over the AZs.")
    instance_type: str = Field("t2.micro", min_length=1, description="EC2 instance type.")
    ami_id: str | None = Field(
        None,
        pattern=r"^ami-[0-9a-f]{8,17}$",
        description="AMI to launch; default: the latest Amazon Linux 2023 from `ami_parameter`.",
    )
    ami_parameter: str = Field(
        AL2023_PARAMETER,
        description="Public SSM parameter that names the AMI when `ami_id` is unset.",
    )
    root_volume_gib: int = Field(8, ge=8, le=1024, description="Encrypted gp3 root volume size.")


BATCH_PERCENT = re.compile(r"^(?P<percent>\d{1,3})%$")


class RolloutSpec(Strict):
    """How a change of the instances (type, AMI) replaces them: rolling, with an additional batch."""

    batch_size: int | str = Field(
        1,
        description="New instances launched (and old ones retired) per batch: a count, or a percentage "
        'of `instances.count` such as "50%" (rounded up). Each batch is healthy behind the ALB before '
        "as many old instances leave it, so capacity never drops below the count.",
    )

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"{value} instances per batch; at least 1")
            return value
        match = BATCH_PERCENT.match(value.strip())
        if not match or not 1 <= int(match["percent"]) <= 100:
            raise ValueError(f'{value!r} is neither a count nor a percentage from "1%" to "100%"')
        return value.strip()

    def batch(self, count: int) -> int:
        """Instances per batch for a fleet of `count` (at least 1, at most `count`)."""
        if isinstance(self.batch_size, int):
            return max(min(self.batch_size, count), 1)
        percent = int(self.batch_size.removesuffix("%"))
        return max(min(-(-count * percent // 100), count), 1)


class AppSpec(Strict):
    port: Port = Field(3000, description="Port the Node.js API listens on.")
    version: str = Field(
        DEFAULT_APP_VERSION,
        pattern=r"^[A-Za-z0-9._:/=+@-]{1,128}$",
        description="The app release the instances run, e.g. 2.4.1 or a commit id: tagged on each "
        "instance at launch (`scaleout:app-version`); changing it replaces the instances, rolling with "
        "an additional batch. Instances without the tag count as this default.",
    )
    health_check_path: str = Field(
        "/", pattern=r"^/[\x21-\x7e]*$", max_length=1024, description="Path the target group checks."
    )
    health_check_interval_seconds: int = Field(
        30,
        ge=5,
        le=300,
        description="Seconds between the target group's health checks of each target (AWS's default 30).",
    )
    healthy_threshold: int = Field(
        5,
        ge=2,
        le=10,
        description="Checks passed in a row before an unhealthy target is healthy again (AWS's default 5).",
    )
    unhealthy_threshold: int = Field(
        2, ge=2, le=10, description="Checks failed in a row before a target is unhealthy (AWS's default 2)."
    )


class LoadBalancerSpec(Strict):
    listener_port: Port = Field(80, description="Port of the ALB's HTTP listener.")
    allowed_cidr: ipaddress.IPv4Network = Field(
        ipaddress.IPv4Network("0.0.0.0/0"), description="Who may reach the ALB."
    )
    deregistration_delay_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="How long a target leaving the group drains (requests in flight finish, no new ones "
        "come) before it is out; AWS's default of 300 would hold every scale in, replacement and "
        "teardown for five minutes.",
    )


class HttpsSpec(Strict):
    """HTTPS at a domain name: a certificate, a 443 listener, port 80 redirected, an alias record."""

    domain: str = Field(
        description="Name the app is served at (e.g. api.example.com): the certificate's name and "
        "the Route 53 alias record to the ALB."
    )
    hosted_zone_id: str | None = Field(
        None,
        pattern=r"^[A-Z0-9]{1,32}$",
        description="Public Route 53 hosted zone that holds `domain`; default: the account's zone "
        "whose name is the longest suffix of `domain`.",
    )
    certificate_arn: str | None = Field(
        None,
        description="An issued ACM certificate in the spec's region covering `domain`, used instead of "
        "requesting one (then never deleted); default: request one, validated by DNS.",
    )
    port: Port = Field(443, description="Port of the ALB's HTTPS listener.")
    ssl_policy: str = Field(
        DEFAULT_SSL_POLICY,
        pattern=r"^ELBSecurityPolicy-[A-Za-z0-9-]+$",
        description="TLS policy of the HTTPS listener.",
    )
    redirect_http: bool = Field(
        True, description="The HTTP listener answers 301 to `https://`; false: it keeps forwarding."
    )

    @field_validator("domain", mode="before")
    @classmethod
    def _domain(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        name = value.strip().lower().removesuffix(".")
        if not DOMAIN_PATTERN.match(name):
            raise ValueError(
                f"{value!r} is not a domain name (e.g. api.example.com: letters, digits, inner "
                "hyphens, at least two labels, no wildcard)"
            )
        return name

    @field_validator("certificate_arn")
    @classmethod
    def _certificate_arn(cls, value: str | None) -> str | None:
        if value is not None and not CERTIFICATE_ARN_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)"
            )
        return value


class TimingSpec(Strict):
    """Poll intervals and limits: seconds on AWS, milliseconds on moto."""

    poll_interval_seconds: PositiveSeconds = Field(5.0, description="Between describe polls.")
    max_poll_interval_seconds: PositiveSeconds | None = Field(
        None,
        description="Polls slow down to this as a wait grows old (a quarter of its age); default: "
        "twice `poll_interval_seconds`.",
    )
    nat_gateway_timeout_seconds: PositiveSeconds = Field(600.0, description="NAT to be `available`.")
    load_balancer_timeout_seconds: PositiveSeconds = Field(600.0, description="ALB to be `active`.")
    instance_timeout_seconds: PositiveSeconds = Field(600.0, description="Instances to be `running`.")
    targets_healthy_timeout_seconds: PositiveSeconds = Field(
        900.0, description="Targets to pass health checks (the app installs Node.js at boot)."
    )
    delete_timeout_seconds: PositiveSeconds = Field(
        900.0, description="A deletion to finish (NAT `deleted`, instances `terminated`)."
    )
    consistency_window_seconds: PositiveSeconds = Field(
        30.0,
        description="How long AWS may take to show a new resource to every call (EC2 and ELBv2 are "
        'eventually consistent): a rollback does not take "not found" for a resource this young as '
        "proof that it is gone, and looks again until then.",
    )
    call_timeout_seconds: PositiveSeconds = Field(
        60.0,
        description="One attempt of a step that waits for nothing; a dead worker's is retried after it. "
        "One AWS call may take half of it (connect and read timeouts, botocore's retries and their "
        "backoff are derived from it) and no call starts that could outlast the attempt; at least 1.",
    )
    heartbeat_timeout_seconds: PositiveSeconds = Field(
        30.0,
        description="A crashed worker is noticed within this time. In a step that waits, one AWS call "
        "may take a quarter of it (timeouts, retries and backoff included), so no call outlives a "
        "missed heartbeat; at least 2 (a local stand-in), 20 or more on AWS.",
    )
    certificate_timeout_seconds: PositiveSeconds = Field(
        7200.0,
        description="The requested certificate to be issued once its DNS validation record exists "
        "(minutes on AWS, sometimes far longer); the wait survives worker restarts.",
    )
    pause_timeout_seconds: PositiveSeconds = Field(
        86400.0, description="With `on_failure: pause`, roll back if nobody decides within this time."
    )
    retry_initial_interval_seconds: PositiveSeconds = Field(1.0, description="First retry delay.")
    retry_maximum_interval_seconds: PositiveSeconds = Field(30.0, description="Retry delay cap.")
    retry_maximum_attempts: int = Field(10, ge=1, description="Attempts per step for retryable AWS errors.")

    @model_validator(mode="after")
    def _poll_intervals(self) -> TimingSpec:
        if (
            self.max_poll_interval_seconds is not None
            and self.max_poll_interval_seconds < self.poll_interval_seconds
        ):
            raise ValueError(
                f"max_poll_interval_seconds ({self.max_poll_interval_seconds:g}) is below "
                f"poll_interval_seconds ({self.poll_interval_seconds:g}); raise it or leave it unset"
            )
        return self

    @field_validator("call_timeout_seconds", "heartbeat_timeout_seconds")
    @classmethod
    def _room_for_a_call(cls, value: float, info: ValidationInfo) -> float:
        """Each AWS call's timeouts are a share of these; too small a share fits no call at all."""
        heartbeat = info.field_name == "heartbeat_timeout_seconds"
        share = CALL_SHARE_OF_HEARTBEAT if heartbeat else CALL_SHARE_OF_START_TO_CLOSE
        if value * share < MIN_CALL_SECONDS:
            raise ValueError(
                f"{info.field_name} ({value:g}) leaves {value * share:g} s for an AWS call ({share:.0%} "
                f"of it), less than one call needs ({MIN_CALL_SECONDS:g} s); set at least "
                f"{MIN_CALL_SECONDS / share:g}"
            )
        return value


class DeploymentSpec(Strict):
    """What to deploy. Defaults reproduce the tutorial in ap-northeast-2."""

    deployment_id: str = Field(
        "scaleout-demo",
        description="Names and tags every resource; lowercase letters, digits and hyphens.",
    )
    region: str = Field("ap-northeast-2", description="AWS region.")
    vpc_id: str | None = Field(
        None, pattern=r"^vpc-[0-9a-f]{8,17}$", description="VPC to use; default: the default VPC."
    )
    private_subnets: list[PrivateSubnetSpec] = Field(
        default_factory=lambda: [
            PrivateSubnetSpec(cidr="172.31.112.0/20", availability_zone="ap-northeast-2a"),
            PrivateSubnetSpec(cidr="172.31.144.0/20", availability_zone="ap-northeast-2c"),
        ],
        description="One private subnet per AZ; the ALB spans the same AZs.",
    )
    nat_mode: NatMode = Field(NatMode.SINGLE, description="`single` or `per_az`.")
    instances: InstancesSpec = Field(default_factory=InstancesSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    app: AppSpec = Field(default_factory=AppSpec)
    load_balancer: LoadBalancerSpec = Field(default_factory=LoadBalancerSpec)
    https: HttpsSpec | None = Field(
        None, description="Serve the app over HTTPS at a domain name; off (plain HTTP) by default."
    )
    wait_for_healthy_targets: bool = Field(
        True, description="Finish only when every target passes its health check."
    )
    on_failure: OnFailure = Field(
        OnFailure.ROLLBACK, description="When a step fails for good: `rollback`, `pause` or `keep`."
    )
    drift: DriftSpec = Field(default_factory=DriftSpec)
    ttl: Duration | None = Field(
        None,
        description="Tear the deployment down this long after the `up` that set it (`starter.py extend` "
        "moves the deadline); none by default.",
    )
    timing: TimingSpec = Field(default_factory=TimingSpec)
    tags: dict[str, str] = Field(default_factory=dict, description="Added to every resource.")

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and _within_a_year(value) < timedelta(seconds=1):
            raise ValueError("at least 1s; leave it unset for a deployment that lives until `down`")
        return value

    @field_validator("deployment_id")
    @classmethod
    def _deployment_id(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty; use e.g. 'web-prod'")
        if len(value) > MAX_DEPLOYMENT_ID_LENGTH:
            raise ValueError(
                f"{value!r} has {len(value)} characters; at most {MAX_DEPLOYMENT_ID_LENGTH} fit "
                "in ALB and target group names (32 characters with the '-alb'/'-tg' suffix)"
            )
        if not DEPLOYMENT_ID_PATTERN.match(value):
            raise ValueError(
                f"{value!r} may hold only lowercase letters, digits and inner hyphens "
                "(AWS load balancer names refuse anything else)"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a region name (e.g. ap-northeast-2)")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        """AWS's tag limits, checked here: the ALB (the strictest) would refuse them only mid-deployment."""
        if len(value) > MAX_USER_TAGS:
            raise ValueError(f"{len(value)} tags; at most {MAX_USER_TAGS} fit beside the project's own")
        for key, text in value.items():
            if key.lower().startswith("aws:") or key.startswith("scaleout:") or key == "Name":
                raise ValueError(f"tag key {key!r} is reserved; choose another key")
            if not 1 <= len(key) <= 128 or len(text) > 256:
                raise ValueError(f"tag {key[:40]!r}: keys have 1-128 characters, values at most 256")
            for what, item in (("key", key), ("value", text)):
                if not all(c.isalnum() or c.isspace() or c in TAG_PUNCTUATION for c in item):
                    raise ValueError(
                        f"tag {what} {item!r} may hold only letters, digits, spaces and {TAG_PUNCTUATION}"
                    )
        return value

    @model_validator(mode="after")
    def _subnets(self) -> DeploymentSpec:
        subnets = self.private_subnets
        zones = [subnet.availability_zone for subnet in subnets]
        if len(set(zones)) < 2:
            raise ValueError(
                "private_subnets must name at least 2 different availability zones: an "
                "Application Load Balancer needs subnets in 2 AZs"
            )
        if len(zones) != len(set(zones)):
            duplicated = sorted({zone for zone in zones if zones.count(zone) > 1})
            raise ValueError(f"private_subnets: one subnet per AZ; {duplicated} appear twice")
        for zone in zones:
            match = AZ_PATTERN.match(zone)
            if match and match["region"] != self.region:
                raise ValueError(f"availability zone {zone!r} is not in region {self.region!r}")
        for i, first in enumerate(subnets):
            for second in subnets[i + 1 :]:
                if first.cidr.overlaps(second.cidr):
                    raise ValueError(
                        f"private subnet CIDRs {first.cidr} and {second.cidr} overlap; "
                        "give each subnet its own range"
                    )
        if self.vpc_id is None:
            for subnet in subnets:
                if not subnet.cidr.subnet_of(DEFAULT_VPC_CIDR):
                    raise ValueError(
                        f"private subnet {subnet.cidr} is outside the default VPC's "
                        f"{DEFAULT_VPC_CIDR}; pick a range inside it (e.g. 172.31.112.0/20)"
                    )
        return self

    @model_validator(mode="after")
    def _https(self) -> DeploymentSpec:
        https = self.https
        if https is None:
            return self
        if https.port == self.load_balancer.listener_port:
            raise ValueError(
                f"https.port and load_balancer.listener_port are both {https.port}; give each "
                "listener its own port (443 and 80)"
            )
        match = CERTIFICATE_ARN_PATTERN.match(https.certificate_arn or "")
        if match and match["region"] != self.region:
            raise ValueError(
                f"https.certificate_arn is in {match['region']}, the deployment in {self.region}; an "
                "ALB uses certificates of its own region only: import or request it in "
                f"{self.region}, or leave certificate_arn unset to have one requested"
            )
        return self

    @property
    def http_redirect_port(self) -> int | None:
        """The HTTPS port the HTTP listener answers 301 to (`https.redirect_http`); None: it forwards."""
        return self.https.port if self.https is not None and self.https.redirect_http else None

    @property
    def availability_zones(self) -> list[str]:
        return [subnet.availability_zone for subnet in self.private_subnets]
