"""Temporal workflows: deterministic orchestration only; every AWS call is an activity."""

from workflows.converge import ConvergeWorkflow
from workflows.deploy import DeployWorkflow
from workflows.deployment import DeploymentWorkflow
from workflows.plan import InspectWorkflow, PlanWorkflow
from workflows.teardown import TeardownWorkflow

WORKFLOWS = [
    ConvergeWorkflow,
    DeployWorkflow,
    DeploymentWorkflow,
    InspectWorkflow,
    PlanWorkflow,
    TeardownWorkflow,
]

__all__ = [
    "WORKFLOWS",
    "ConvergeWorkflow",
    "DeployWorkflow",
    "DeploymentWorkflow",
    "InspectWorkflow",
    "PlanWorkflow",
    "TeardownWorkflow",
]
