"""Temporal workflows: deterministic orchestration only; every AWS call is an activity."""

from workflows.deploy import DeployWorkflow
from workflows.plan import PlanWorkflow
from workflows.teardown import TeardownWorkflow

WORKFLOWS = [DeployWorkflow, PlanWorkflow, TeardownWorkflow]

__all__ = ["WORKFLOWS", "DeployWorkflow", "PlanWorkflow", "TeardownWorkflow"]
