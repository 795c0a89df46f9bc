"""AWS activities, one module per area; each class takes its clients so tests can hook them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.aws_clients import AwsClients
from activities.certificates import CertificateActivities
from activities.compute import ComputeActivities
from activities.dns import DnsActivities
from activities.drift import DriftActivities
from activities.drift_repair import DriftRepairActivities
from activities.inventory import InventoryActivities
from activities.load_balancing import LoadBalancingActivities
from activities.network import NetworkActivities
from activities.planning import PlanActivities
from activities.preflight import PreflightActivities
from activities.security_groups import SecurityGroupActivities
from activities.targets import TargetActivities

ACTIVITY_CLASSES = (
    PreflightActivities,
    NetworkActivities,
    SecurityGroupActivities,
    LoadBalancingActivities,
    ComputeActivities,
    CertificateActivities,
    DnsActivities,
    InventoryActivities,
    PlanActivities,
    TargetActivities,
    DriftActivities,
    DriftRepairActivities,
)


def all_activities(aws: AwsClients) -> list[Callable[..., Any]]:
    """Every activity, bound to one shared set of clients, for `Worker(activities=...)`."""
    bound = []
    for cls in ACTIVITY_CLASSES:
        instance = cls(aws)
        bound += [
            getattr(instance, name)
            for name, member in vars(cls).items()
            if hasattr(member, "__temporal_activity_definition")
        ]
    return bound


__all__ = [
    "ACTIVITY_CLASSES",
    "AwsClients",
    "CertificateActivities",
    "ComputeActivities",
    "DnsActivities",
    "DriftActivities",
    "DriftRepairActivities",
    "InventoryActivities",
    "LoadBalancingActivities",
    "NetworkActivities",
    "PlanActivities",
    "PreflightActivities",
    "SecurityGroupActivities",
    "TargetActivities",
    "all_activities",
]
