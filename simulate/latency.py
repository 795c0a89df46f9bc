"""Make moto as slow as AWS: every call takes its modelled time, resources take time to be ready.

moto answers at once and reports NAT gateways `available`, instances `running`, the ALB `active` and
targets `healthy` on the first poll, so timings on moto say nothing about timings on AWS. This model
hooks the botocore events of the boto3 session the worker's `AwsClients` use (as tests/support/faults.py
does) and, from the profile:
- pads every call to its modelled latency (moto's own time counts towards it), and dates what the
  call did at its modelled reply, so moto's own slowness never delays a modelled resource;
- remembers when each resource was created or deleted, and rewrites describe answers to `pending`,
  `provisioning`, `initial`, `deleting`, `shutting-down` until the modelled time has passed;
- models the app: it listens `app_listening` after the instance is `running` *and* its subnet routes
  0.0.0.0/0 to an available NAT gateway (the user data retries its install until egress works); a
  target turns `healthy` `target_healthy` after the app listens, it is registered and a listener
  forwards to its group.
The clocks live in this object: they hold in the process whose session carries the hooks, and a
resource it never saw created is reported as moto has it. Benchmarks and tests only: the worker a user
runs never installs it.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from simulate.profile import LatencyProfile

STARTED = "simulate.started"
PARAMS = "simulate.params"
NEVER = math.inf
ALWAYS = -math.inf

Handler = Callable[[dict[str, Any], dict[str, Any], float], None]


class LatencyModel:
    """Install once per session, before the session builds its first client (clients copy the hooks)."""

    def __init__(self, profile: LatencyProfile, clock: Callable[[], float] = time.monotonic) -> None:
        self.profile = profile
        self._clock = clock
        self._lock = threading.Lock()
        self.held: Counter[str] = Counter()
        """Describe answers rewritten to a not-ready state, by what was not ready: proof the waits waited."""
        self._nat_created: dict[str, float] = {}
        self._nat_deleted: dict[str, float] = {}
        self._lb_created: dict[str, float] = {}
        self._lb_deleted: dict[str, float] = {}
        self._lb_seen: dict[str, dict[str, Any]] = {}
        self._launched: dict[str, float] = {}
        self._terminated: dict[str, float] = {}
        self._subnet_of: dict[str, str] = {}
        self._route: dict[str, tuple[str, float]] = {}  # route table -> (NAT gateway, when)
        self._association: dict[str, tuple[str, float]] = {}  # subnet -> (route table, when)
        self._registered: dict[tuple[str, str], float] = {}  # (target group, instance) -> when
        self._listener: dict[str, float] = {}  # target group -> first listener forwarding to it
        self._after: dict[tuple[str, str], Handler] = {
            ("ec2", "CreateNatGateway"): self._nat_gateway_created,
            ("ec2", "DeleteNatGateway"): self._nat_gateway_deleted,
            ("ec2", "DescribeNatGateways"): self._describe_nat_gateways,
            ("ec2", "RunInstances"): self._instances_launched,
            ("ec2", "TerminateInstances"): self._instances_terminated,
            ("ec2", "DescribeInstances"): self._describe_instances,
            ("ec2", "DescribeInstanceStatus"): self._describe_instance_status,
            ("ec2", "CreateRoute"): self._route_set,
            ("ec2", "ReplaceRoute"): self._route_set,
            ("ec2", "AssociateRouteTable"): self._route_table_associated,
            ("elbv2", "CreateLoadBalancer"): self._load_balancer_created,
            ("elbv2", "DeleteLoadBalancer"): self._load_balancer_deleted,
            ("elbv2", "DescribeLoadBalancers"): self._describe_load_balancers,
            ("elbv2", "CreateListener"): self._listener_created,
            ("elbv2", "RegisterTargets"): self._targets_registered,
            ("elbv2", "DeregisterTargets"): self._targets_deregistered,
            ("elbv2", "DescribeTargetHealth"): self._describe_target_health,
        }

    def install(self, session: boto3.Session) -> LatencyModel:
        session.events.register("before-parameter-build", self._on_start)
        session.events.register("before-call.elbv2.DescribeLoadBalancers", self._lb_going)
        session.events.register("after-call", self._on_end)
        return self

    # botocore hooks

    def _on_start(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[STARTED], context[PARAMS] = self._clock(), params

    def _on_end(
        self,
        http_response: AWSResponse,
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        service, action = model.service_model.service_name, model.name
        started = context.get(STARTED)
        answered = self._clock() if started is None else started + self.profile.call(service, action)
        remaining = answered - self._clock()
        if remaining > 0:
            time.sleep(remaining)
        handler = self._after.get((service, action))
        if handler is None or http_response.status_code >= 300:
            return
        with self._lock:
            # Modelled AWS answered at `answered`; moto's own slowness (RunInstances takes 150 ms on
            # a busy machine) delays the reply but does not delay the modelled resource.
            handler(context.get(PARAMS) or {}, parsed, answered)

    def _lb_going(self, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        """A deleted ALB stays described (as `active`) until its modelled deletion time has passed.

        moto forgets it at once; answering here, before the HTTP request, keeps botocore's own parsing
        and error handling out of the way. Only lookups by ARN (what the deletion wait uses) see it.
        """
        arns = (context.get(PARAMS) or {}).get("LoadBalancerArns") or []
        now = self._clock()
        with self._lock:
            going = [arn for arn in arns if now < self._lb_gone_at(arn) and arn in self._lb_seen]
            if not arns or len(going) != len(arns):
                return None
            self.held["load_balancer_deleting"] += 1
            balancers = [{**copy.deepcopy(self._lb_seen[arn]), "State": {"Code": "active"}} for arn in going]
        http = AWSResponse(url="https://simulated.invalid", status_code=200, headers={}, raw=None)
        return http, {"LoadBalancers": balancers, "ResponseMetadata": {"HTTPStatusCode": 200}}

    # When resources become ready

    def _nat_ready_at(self, nat_id: str) -> float:
        created = self._nat_created.get(nat_id)
        return ALWAYS if created is None else created + self.profile.seconds("nat_gateway_available")

    def _lb_gone_at(self, arn: str) -> float:
        deleted = self._lb_deleted.get(arn)
        return ALWAYS if deleted is None else deleted + self.profile.seconds("load_balancer_deleted")

    def _egress_at(self, instance_id: str) -> float:
        """When the instance's subnet first routes to an available NAT gateway; NEVER if it does not."""
        association = self._association.get(self._subnet_of.get(instance_id, ""))
        if association is None:
            return NEVER
        table, associated = association
        route = self._route.get(table)
        if route is None:
            return NEVER
        nat_id, routed = route
        return max(associated, routed, self._nat_ready_at(nat_id))

    def _healthy_at(self, group: str, instance_id: str) -> float:
        launched = self._launched.get(instance_id)
        if launched is None:
            return ALWAYS  # not launched through this model: moto's answer stands
        running = launched + self.profile.seconds("instance_running")
        listening = max(running, self._egress_at(instance_id)) + self.profile.seconds("app_listening")
        registered = self._registered.get((group, instance_id), NEVER)
        forwarded = self._listener.get(group, NEVER)
        return max(listening, registered, forwarded) + self.profile.seconds("target_healthy")

    # EC2

    def _nat_gateway_created(self, params: dict, parsed: dict, now: float) -> None:
        self._nat_created.setdefault(parsed["NatGateway"]["NatGatewayId"], now)

    def _nat_gateway_deleted(self, params: dict, parsed: dict, now: float) -> None:
        self._nat_deleted.setdefault(params["NatGatewayId"], now)

    def _describe_nat_gateways(self, params: dict, parsed: dict, now: float) -> None:
        for gateway in parsed.get("NatGateways", []):
            nat_id, state = gateway["NatGatewayId"], gateway.get("State")
            if state == "available" and now < self._nat_ready_at(nat_id):
                gateway["State"] = "pending"
                self.held["nat_gateway"] += 1
            elif state == "deleted" and now < self._nat_deleted.get(nat_id, ALWAYS) + self.profile.seconds(
                "nat_gateway_deleted"
            ):
                gateway["State"] = "deleting"
                self.held["nat_gateway_deleting"] += 1

    def _instances_launched(self, params: dict, parsed: dict, now: float) -> None:
        for instance in parsed.get("Instances", []):
            self._launched.setdefault(instance["InstanceId"], now)
            if instance.get("SubnetId"):
                self._subnet_of[instance["InstanceId"]] = instance["SubnetId"]

    def _instances_terminated(self, params: dict, parsed: dict, now: float) -> None:
        for instance in parsed.get("TerminatingInstances", []):
            self._terminated.setdefault(instance["InstanceId"], now)

    def _describe_instances(self, params: dict, parsed: dict, now: float) -> None:
        running_after = self.profile.seconds("instance_running")
        terminated_after = self.profile.seconds("instance_terminated")
        for reservation in parsed.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                instance_id, state = instance["InstanceId"], instance.get("State", {}).get("Name")
                if state == "running" and now < self._launched.get(instance_id, ALWAYS) + running_after:
                    instance["State"] = {"Code": 0, "Name": "pending"}
                    self.held["instance"] += 1
                elif (
                    state == "terminated"
                    and now < self._terminated.get(instance_id, ALWAYS) + terminated_after
                ):
                    instance["State"] = {"Code": 32, "Name": "shutting-down"}
                    self.held["instance_terminating"] += 1

    def _describe_instance_status(self, params: dict, parsed: dict, now: float) -> None:
        running_after = self.profile.seconds("instance_running")
        for status in parsed.get("InstanceStatuses", []):
            instance_id, state = status["InstanceId"], status.get("InstanceState", {}).get("Name")
            if state == "running" and now < self._launched.get(instance_id, ALWAYS) + running_after:
                status["InstanceState"] = {"Code": 0, "Name": "pending"}
                self.held["instance"] += 1

    def _route_set(self, params: dict, parsed: dict, now: float) -> None:
        if params.get("DestinationCidrBlock") == "0.0.0.0/0" and params.get("NatGatewayId"):
            self._route[params["RouteTableId"]] = (params["NatGatewayId"], now)

    def _route_table_associated(self, params: dict, parsed: dict, now: float) -> None:
        if params.get("SubnetId"):
            self._association[params["SubnetId"]] = (params["RouteTableId"], now)

    # ELBv2

    def _load_balancer_created(self, params: dict, parsed: dict, now: float) -> None:
        for balancer in parsed.get("LoadBalancers", []):
            self._lb_created.setdefault(balancer["LoadBalancerArn"], now)
            self._lb_seen[balancer["LoadBalancerArn"]] = copy.deepcopy(balancer)

    def _load_balancer_deleted(self, params: dict, parsed: dict, now: float) -> None:
        self._lb_deleted.setdefault(params["LoadBalancerArn"], now)

    def _describe_load_balancers(self, params: dict, parsed: dict, now: float) -> None:
        active_after = self.profile.seconds("load_balancer_active")
        for balancer in parsed.get("LoadBalancers", []):
            arn = balancer["LoadBalancerArn"]
            self._lb_seen[arn] = copy.deepcopy(balancer)
            code = balancer.get("State", {}).get("Code")
            if code == "active" and now < self._lb_created.get(arn, ALWAYS) + active_after:
                balancer["State"] = {"Code": "provisioning"}
                self.held["load_balancer"] += 1

    def _listener_created(self, params: dict, parsed: dict, now: float) -> None:
        for action in params.get("DefaultActions", []):
            groups = [action.get("TargetGroupArn")] + [
                g.get("TargetGroupArn") for g in action.get("ForwardConfig", {}).get("TargetGroups", [])
            ]
            for group in filter(None, groups):
                self._listener.setdefault(group, now)

    def _targets_registered(self, params: dict, parsed: dict, now: float) -> None:
        for target in params.get("Targets", []):
            self._registered.setdefault((params["TargetGroupArn"], target["Id"]), now)

    def _targets_deregistered(self, params: dict, parsed: dict, now: float) -> None:
        for target in params.get("Targets", []):
            self._registered.pop((params["TargetGroupArn"], target["Id"]), None)

    def _describe_target_health(self, params: dict, parsed: dict, now: float) -> None:
        group = params.get("TargetGroupArn", "")
        for description in parsed.get("TargetHealthDescriptions", []):
            health = description.get("TargetHealth", {})
            if health.get("State") != "healthy" or now >= self._healthy_at(
                group, description["Target"]["Id"]
            ):
                continue
            if group in self._listener:
                description["TargetHealth"] = {
                    "State": "initial",
                    "Reason": "Elb.InitialHealthChecking",
                    "Description": "Initial health checks in progress",
                }
            else:
                description["TargetHealth"] = {
                    "State": "unused",
                    "Reason": "Target.NotInUse",
                    "Description": "Target group is not configured to receive traffic from the load balancer",
                }
            self.held["target"] += 1
