"""Targets by instance: take some out of a group (the others keep serving), or put some back; and the
group's settings a converge changes in place (health check, deregistration delay).

`LoadBalancingActivities.deregister_targets` removes every target of the group (teardown, a deploy's
rollback); a converge removes exactly the instances it retires, and its rollback puts the old ones back
before the new ones leave.

What AWS does that moto does not: a deregistered target is `draining` for the group's deregistration
delay (requests in flight finish, no new ones come) before `unused`; moto answers `unused` at once (and
keeps a terminated instance `draining` for good, so the drain is waited for before termination, as it
must be anyway). DescribeTargetHealth lists draining targets too; DeregisterTargets naming a target
already draining succeeds, and InvalidTarget answers one that is not (or no longer) registered. An id
seconds old may not be known yet (eventual consistency): calls naming the run's fresh ids retry until
the consistency window has passed (`until_visible`, `found_once_settled`).
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from temporalio import activity

from activities.aws_clients import AwsClients
from activities.consistency import found_once_settled, settles_at, until_visible
from activities.errors import aws_errors, client_error_code
from activities.load_balancing import (
    LoadBalancingActivities,
    deregistration_delay,
    health_check_parameters,
    health_check_timeout,
    listener_action,
)
from activities.waits import wait_for
from models.converge import DrainInput, ListenerActionInput, SslPolicyInput, TargetGroupSettingsInput
from models.resources import Deleted, Kind, RegisterTargetsInput, Resource, TargetsHealthyInput


class TargetActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws
        self._balancing = LoadBalancingActivities(aws)

    @activity.defn
    @aws_errors
    def drain_targets(self, request: DrainInput) -> Deleted:
        """Deregister the instances among `ids` that the group lists, then wait until ELB has drained
        them (botocore's `target_deregistered`: each `unused`, or unknown to the group)."""
        elbv2 = self._aws.elbv2(request.key.scope.region)
        group = request.target_group_arn

        def registered() -> list[str]:
            described = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
            return [d["Target"]["Id"] for d in described if d["Target"]["Id"] in request.ids]

        leaving = found_once_settled(request, registered)
        if not leaving:
            return Deleted.of(Kind.TARGET_REGISTRATION, request.key.name, [])
        targets = [{"Id": instance_id, "Port": request.port} for instance_id in leaving]
        try:
            until_visible(
                lambda: elbv2.deregister_targets(TargetGroupArn=group, Targets=targets),
                f"targets {', '.join(leaving)}",
                until=settles_at(request),
            )
        except ClientError as err:
            if client_error_code(err) != "InvalidTarget":  # no longer registered: what we want
                raise
        wait_for(
            elbv2,
            "target_deregistered",
            request.waiting,
            f"{', '.join(leaving)} to drain",
            TargetGroupArn=group,
            Targets=targets,
        )
        return Deleted.of(Kind.TARGET_REGISTRATION, request.key.name, leaving)

    @activity.defn
    @aws_errors
    def configure_target_group(self, request: TargetGroupSettingsInput) -> Resource:
        """The health check (ModifyTargetGroup), then the deregistration delay (its attributes): each
        call sets values, so a retry, or the compensation with the values before, is safe to repeat."""
        elbv2 = self._aws.elbv2(request.key.scope.region)
        arn, settings = request.target_group_arn, request.settings
        elbv2.modify_target_group(
            TargetGroupArn=arn, **health_check_parameters(settings), **health_check_timeout(settings)
        )
        elbv2.modify_target_group_attributes(TargetGroupArn=arn, Attributes=deregistration_delay(settings))
        return Resource(kind=Kind.TARGET_GROUP, name=request.key.name, id=arn)

    @activity.defn
    @aws_errors
    def set_listener_action(self, request: ListenerActionInput) -> Resource:
        """Forward to the target group, or redirect to HTTPS: ModifyListener sets the default action,
        so a retry, or the compensation with the action before, is safe to repeat."""
        action = listener_action(request.target_group_arn, request.redirect_to_port)
        elbv2 = self._aws.elbv2(request.key.scope.region)
        elbv2.modify_listener(ListenerArn=request.listener_arn, DefaultActions=[action])
        return Resource(kind=Kind.LISTENER, name=request.key.name, id=request.listener_arn)

    @activity.defn
    @aws_errors
    def set_ssl_policy(self, request: SslPolicyInput) -> Resource:
        """The HTTPS listener's TLS policy: ModifyListener sets it, so a retry, or the compensation
        with the policy before, is safe to repeat. Connections open keep the policy they began with."""
        elbv2 = self._aws.elbv2(request.key.scope.region)
        elbv2.modify_listener(ListenerArn=request.listener_arn, SslPolicy=request.ssl_policy)
        return Resource(kind=Kind.LISTENER, name=request.key.name, id=request.listener_arn)

    @activity.defn
    @aws_errors
    def reinstate_targets(self, request: TargetsHealthyInput) -> None:
        """Register the instances (again) and wait until they pass their health checks: a rollback
        puts the old instances back in service before the new ones are taken out."""
        self._balancing.register_targets(
            RegisterTargetsInput(
                key=request.key,
                target_group_arn=request.target_group_arn,
                instance_ids=request.instance_ids,
                port=request.port,
            )
        )
        self._balancing.wait_targets_healthy(request)
