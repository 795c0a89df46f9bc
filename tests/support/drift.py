"""Drift made by hand, and waits on the deployment's workflow while it checks and repairs: shared by
the drift tests, the IAM policy test and the history recorder."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from activities.drift_repair import ALL_TRAFFIC
from models.deployment import DeploymentStatus, Operation, workflow_id
from models.naming import APP_SECURITY_GROUP
from models.resources import DeploymentOutputs, Kind
from models.spec import DeploymentSpec
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from workflows.deployment import DeploymentWorkflow

SSH = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
"""The rule added by hand: a drift `report` shows it and `repair` revokes it."""
SMTP_OUT = {"IpProtocol": "tcp", "FromPort": 25, "ToPort": 25, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
"""An egress rule added by hand (IPv4: moto answers a revoke of an IPv6 egress rule with success and
keeps the rule, where AWS removes it)."""


def narrow_egress(ec2: Any, outputs: DeploymentOutputs) -> None:
    """By hand: the app's group loses AWS's allow-all egress, the ALB's gains SMTP_OUT."""
    ec2.revoke_security_group_egress(GroupId=outputs.app_security_group_id, IpPermissions=[ALL_TRAFFIC])
    ec2.authorize_security_group_egress(GroupId=outputs.alb_security_group_id, IpPermissions=[SMTP_OUT])


def watched(on_drift: str, **overrides: Any) -> DeploymentSpec:
    """A spec checked every second (`report` or `repair`)."""
    return fast_spec(drift={"check_every": "1s", "on_drift": on_drift}, **overrides)


def app_group(outputs: DeploymentOutputs) -> str:
    return next(
        r.id for r in outputs.resources if r.kind is Kind.SECURITY_GROUP and r.name == APP_SECURITY_GROUP
    )


async def status_of(client: Client, deployment_id: str) -> DeploymentStatus:
    handle = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(deployment_id))
    return await handle.query(DeploymentWorkflow.status)


async def repaired(client: Client, deployment_id: str, timeout: float = 60) -> DeploymentStatus:
    """A repair ended and the check after it found the deployment clean."""
    return await eventually(
        lambda: status_of(client, deployment_id),
        lambda s: (
            s.running is None
            and s.state.last is not None
            and s.state.last.operation is Operation.REPAIR
            and s.state.drift is not None
            and not s.state.drift.drifted
        ),
        timeout=timeout,
    )
