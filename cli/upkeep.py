"""`check` and `extend`: a live deployment's drift on demand, and its time-to-live moved.

Both are updates of the deployment's long-lived workflow (`deployment-<id>`): the check runs on the
worker (where the AWS credentials are) and its report becomes the deployment's drift in `status`, the
UI and `list --drifted`; `extend` is answered at once with the new deadline.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError

from cli import render
from cli.commands import (
    EXIT_DEPLOYMENT_FAILED,
    EXIT_NOT_APPLICABLE,
    EXIT_OK,
    EXIT_UNKNOWN_DEPLOYMENT,
    Output,
    describe,
    note_missing_workers,
    running,
)
from cli.connection import connect
from cli.errors import UserError
from models.deployment import DeploymentState, ExtendRequest, ExtendResult, workflow_id
from models.drift import DriftReport
from workflows.deployment import DeploymentWorkflow
from workflows.saga import root_message

EXIT_DRIFTED = EXIT_NOT_APPLICABLE
"""`check`: the deployment differs from its spec (the same code as a change `up` refuses: in both,
what is live is not what the spec says, and nothing was changed)."""


async def live_deployment(client: Client, deployment_id: str) -> WorkflowHandle:
    """The deployment's running workflow, or a clear error (exit 4) when it has none."""
    entity = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(deployment_id))
    if not running(await describe(entity)):
        raise UserError(
            f"no live deployment {deployment_id}: its workflow {entity.id} does not run (never deployed, "
            "torn down, or made by a standalone run before the long-lived workflow existed: `starter.py "
            "up` with its spec adopts it)",
            EXIT_UNKNOWN_DEPLOYMENT,
        )
    return entity


async def refuse_expired(client: Client, deployment_id: str) -> None:
    """A deployment its time-to-live tore down: say so, rather than that it is unknown."""
    entity = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(deployment_id))
    description = await describe(entity)
    if description is None or description.status != WorkflowExecutionStatus.COMPLETED:
        return
    final: DeploymentState = await entity.result()
    if final.expired and final.expires_at is not None:
        raise UserError(
            f"{deployment_id} expired at {final.expires_at:%Y-%m-%d %H:%M:%S} UTC and was torn down; too "
            "late to extend it (`starter.py up` deploys it again)",
            EXIT_NOT_APPLICABLE,
        )


async def check(deployment_id: str, as_json: bool) -> int:
    """Compare what is live with the spec (read-only); exit 0 when clean, 5 when drifted."""
    client = await connect()
    entity = await live_deployment(client, deployment_id)
    output = Output(as_json)
    await note_missing_workers(client, output)
    try:
        report: DriftReport = await entity.execute_update(DeploymentWorkflow.check)
    except WorkflowUpdateFailedError as err:
        raise UserError(f"{deployment_id}: {root_message(err)}", EXIT_DEPLOYMENT_FAILED) from None
    payload = {"deployment_id": deployment_id, "drifted": report.drifted, **report.model_dump(mode="json")}
    if not report.drifted:
        output.note(f"{deployment_id}: no drift (live resources match the spec)")
        output.result(payload)
        return EXIT_OK
    output.note(f"[bold yellow]{deployment_id} drifted:[/] {len(report.items)} difference(s)")
    output.result(payload, render.drift_table(report))
    return EXIT_DRIFTED


async def extend(deployment_id: str, by: timedelta, as_json: bool) -> int:
    """Move the time-to-live's deadline `by` later; the answer is the new deadline."""
    client = await connect()
    await refuse_expired(client, deployment_id)
    entity = await live_deployment(client, deployment_id)
    output = Output(as_json)
    try:
        result: ExtendResult = await entity.execute_update(DeploymentWorkflow.extend, ExtendRequest(by=by))
    except WorkflowUpdateFailedError as err:
        raise UserError(f"{deployment_id}: {root_message(err)}", EXIT_NOT_APPLICABLE) from None
    output.note(f"{deployment_id} now expires at {result.expires_at:%Y-%m-%d %H:%M:%S} UTC")
    output.result(result.model_dump(mode="json"))
    return EXIT_OK
