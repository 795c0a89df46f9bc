"""Temporal workflows: deterministic orchestration only; every AWS call is an activity."""

from workflows.converge import ConvergeWorkflow
from workflows.deploy import DeployWorkflow
from workflows.plan import InspectWorkflow, PlanWorkflow
from workflows.teardown import TeardownWorkflow

WORKFLOWS = [ConvergeWorkflow, DeployWorkflow, InspectWorkflow, PlanWorkflow, TeardownWorkflow]

__all__ = [
    "WORKFLOWS",
    "ConvergeWorkflow",
    "DeployWorkflow",
    "InspectWorkflow",
    "PlanWorkflow",
    "TeardownWorkflow",
]
