"""Temporal workflows: deterministic orchestration only; every AWS call is an activity."""

from workflows.deploy import DeployWorkflow
from workflows.teardown import TeardownWorkflow

WORKFLOWS = [DeployWorkflow, TeardownWorkflow]

__all__ = ["WORKFLOWS", "DeployWorkflow", "TeardownWorkflow"]
