"""`list`: the deployments as users have them, read from Temporal's visibility store.

Each deployment once: its long-lived `deployment-<id>` workflow while it runs, else a standalone
`deploy-<id>` run from before that workflow existed, unless a deployment workflow adopted it. A
`deploy-<id>` run with a parent is a deployment workflow's create (its child): the parent speaks for it.
Filters run in the server's query, so a namespace without the search attributes says so at once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError, RPCStatusCode

from cli.errors import UserError
from models.deployment import DeploymentPhase
from models.deployment import workflow_id as deployment_workflow_id
from models.progress import Phase
from workflows import search_attributes
from workflows.deploy import workflow_id as deploy_workflow_id

DEPLOYMENT_WORKFLOW = "DeploymentWorkflow"
STANDALONE_WORKFLOW = "DeployWorkflow"
PHASES = list(dict.fromkeys([*(p.value for p in DeploymentPhase), *(p.value for p in Phase)]))
"""What `--phase` takes: a deployment workflow's phases, then a standalone run's (some are shared)."""


class DeploymentRow(BaseModel):
    deployment_id: str
    workflow_id: str = Field(description="`deployment-<id>`, or `deploy-<id>` for a standalone run.")
    standalone: bool = Field(description="A `deploy-<id>` run no deployment workflow has adopted.")
    status: str = Field(description="The workflow's execution status (RUNNING, COMPLETED, ...).")
    phase: str | None = Field(description="DeploymentPhase; None where the namespace lacks it.")
    drifted: bool | None = Field(description="DeploymentDrift; None until a drift check set it.")
    expires: datetime | None = Field(description="DeploymentExpires: the time-to-live's deadline.")
    region: str | None
    started: datetime
    run_id: str | None


async def deployments(client: Client, phase: str | None = None, drifted: bool = False) -> list[DeploymentRow]:
    """Newest first. `drifted` leaves out standalone runs: only a deployment workflow checks drift."""
    filters = ""
    if phase is not None:
        filters += f" AND {search_attributes.DEPLOYMENT_PHASE.name} = '{phase}'"
    if drifted:
        filters += f" AND {search_attributes.DEPLOYMENT_DRIFT.name} = true"
    running = await _query(
        client, f"WorkflowType = '{DEPLOYMENT_WORKFLOW}' AND ExecutionStatus = 'Running'{filters}"
    )
    rows = {execution.id: await _row(execution, standalone=False) for execution in running}
    listed = {row.deployment_id for row in rows.values()}
    if not drifted:
        standalone = await _standalone(client, filters, listed)
        rows |= {execution.id: await _row(execution, standalone=True) for execution in standalone}
    return sorted(rows.values(), key=lambda row: row.started, reverse=True)


async def _standalone(client: Client, filters: str, listed: set[str]) -> list[WorkflowExecution]:
    """The newest run of each `deploy-<id>` without a parent, if no deployment workflow adopted it."""
    newest: dict[str, WorkflowExecution] = {}
    for execution in await _query(client, f"WorkflowType = '{STANDALONE_WORKFLOW}'{filters}"):
        if execution.parent_id is not None:
            continue
        kept = newest.get(execution.id)
        if kept is None or execution.start_time > kept.start_time:
            newest[execution.id] = execution
    candidates = [e for e in newest.values() if _deployment_id(e.id) not in listed]
    adopted = await asyncio.gather(*(_adopted(client, _deployment_id(e.id)) for e in candidates))
    return [execution for execution, taken in zip(candidates, adopted, strict=True) if not taken]


async def _adopted(client: Client, deployment_id: str) -> bool:
    """A deployment workflow exists (running or ended) for this id: it took the standalone run over."""
    try:
        await client.get_workflow_handle(deployment_workflow_id(deployment_id)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _query(client: Client, query: str) -> list[WorkflowExecution]:
    try:
        return [execution async for execution in client.list_workflows(query)]
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        raise UserError(
            f"this namespace cannot filter deployments this way ({err.message}); register the "
            "DeploymentPhase and DeploymentDrift search attributes as docs/temporal-connection.md shows"
        ) from None


def _deployment_id(workflow_id: str) -> str:
    for prefix in (deployment_workflow_id(""), deploy_workflow_id("")):
        if workflow_id.startswith(prefix):
            return workflow_id.removeprefix(prefix)
    return workflow_id


async def _row(execution: WorkflowExecution, *, standalone: bool) -> DeploymentRow:
    attributes = execution.typed_search_attributes
    region: Any = await execution.memo_value("region", None)
    return DeploymentRow(
        deployment_id=attributes.get(search_attributes.DEPLOYMENT_ID) or _deployment_id(execution.id),
        workflow_id=execution.id,
        standalone=standalone,
        status=execution.status.name if execution.status else "UNKNOWN",
        phase=attributes.get(search_attributes.DEPLOYMENT_PHASE),
        drifted=attributes.get(search_attributes.DEPLOYMENT_DRIFT),
        expires=attributes.get(search_attributes.DEPLOYMENT_EXPIRES),
        region=region if isinstance(region, str) else None,
        started=execution.start_time,
        run_id=execution.run_id,
    )
