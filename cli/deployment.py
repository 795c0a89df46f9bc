"""`up` and `down` through the deployment's long-lived workflow (`deployment-<id>`, workflows/deployment.py).

`up` is update-with-start: the `up` update carries the spec, and the workflow is started (with
USE_EXISTING) if it does not run yet. Its answer comes once the operation has ended; meanwhile the
progress shown is the running child's (`deploy-<id>` for a create, `converge-<id>-<n>` for a change).
`down` is the workflow's `down` update when it runs, else the teardown workflow as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from cli import commands, render
from cli.commands import (
    EXIT_DEPLOYMENT_FAILED,
    EXIT_NOT_APPLICABLE,
    EXIT_OK,
    POLL_SECONDS,
    QUERY_TIMEOUT,
    Output,
    describe,
    note_missing_workers,
    outlive_outages,
    paused,
    running,
    show_progress,
    ui_link,
)
from cli.connection import connect, task_queue
from cli.errors import UserError
from models.deployment import (
    DeploymentPhase,
    DeploymentState,
    DeploymentStatus,
    DownRequest,
    DownResult,
    Operation,
    OperationResult,
    Outcome,
    workflow_id,
)
from models.progress import DeploymentProgress, Phase
from models.resources import TeardownResult
from models.spec import DeploymentSpec
from workflows import search_attributes
from workflows.deploy import workflow_id as deploy_workflow_id
from workflows.deployment import DeploymentWorkflow, describe_spec
from workflows.saga import root_message

ACCEPT_TIMEOUT = QUERY_TIMEOUT
CHILD_OPERATIONS = (Operation.CREATE, Operation.CONVERGE)


class OperationProgress:
    """What `show_progress` queries: the running operation's steps (its child workflow's `progress`),
    else the deployment workflow's own account."""

    def __init__(self, client: Client, entity: WorkflowHandle) -> None:
        self.client, self.entity = client, entity
        self.last_child: str | None = None

    async def query(self, _query: Any, rpc_timeout: Any = None) -> DeploymentProgress:
        status: DeploymentStatus = await self.entity.query(DeploymentWorkflow.status, rpc_timeout=rpc_timeout)
        if status.running in CHILD_OPERATIONS and status.child_workflow_id:
            self.last_child = status.child_workflow_id
        if self.last_child is not None:
            child = self.client.get_workflow_handle(self.last_child)
            return await child.query("progress", result_type=DeploymentProgress, rpc_timeout=rpc_timeout)
        return await self.entity.query(DeploymentWorkflow.progress, rpc_timeout=rpc_timeout)


async def status_of(entity: WorkflowHandle) -> DeploymentStatus | None:
    try:
        return await entity.query(DeploymentWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except Exception:  # noqa: BLE001 - no worker answers yet: the update will wait for one too
        return None


async def first_state(
    client: Client, spec: DeploymentSpec, known: WorkflowExecutionDescription | None
) -> DeploymentState:
    """A new deployment's state. When a run of it came before (a standalone `deploy-<id>`, made before
    the long-lived workflow existed, or an ended `deployment-<id>`), it is adopted: its first operation
    reads what is live by tags instead of assuming nothing exists, with the standalone run's region
    and outputs carried over."""
    state = DeploymentState(deployment_id=spec.deployment_id, region=spec.region)
    legacy = client.get_workflow_handle(deploy_workflow_id(spec.deployment_id))
    description = await describe(legacy)
    if description is None and known is None:
        return state
    source = description or known
    assert source is not None
    region = await source.memo_value("region", None) or spec.region
    completed = description is not None and description.status == WorkflowExecutionStatus.COMPLETED
    outputs = await legacy.result() if completed and known is None else None
    adopted = legacy.id if description is not None else workflow_id(spec.deployment_id)
    return state.model_copy(update={"region": region, "outputs": outputs, "adopted_from": adopted})


def start_options(spec: DeploymentSpec) -> dict[str, Any]:
    return dict(
        id=workflow_id(spec.deployment_id),
        task_queue=task_queue(),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo={"deployment_id": spec.deployment_id, "region": spec.region},
        static_summary=f"Deployment {spec.deployment_id} in {spec.region} (its whole life)",
        static_details=describe_spec(spec),
    )


def missing_attributes(err: RPCError) -> bool:
    return err.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message.lower()


MISSING_ATTRIBUTES_NOTE = (
    "note: this namespace lacks some of the search attributes DeploymentId, DeploymentPhase, "
    "DeploymentDrift and DeploymentExpires, so `list --phase`/`--drifted` and the UI cannot filter by "
    "them; register them (docs/temporal-connection.md)"
)


async def send_up(client: Client, spec: DeploymentSpec, state: DeploymentState, output: Output) -> Any:
    """The `up` update, starting the workflow if it does not run; accepted (or rejected) on return."""
    choices = search_attributes.for_deployment(spec.deployment_id, DeploymentPhase.NEW.value)
    for attributes in choices:
        options = start_options(spec) | ({"search_attributes": attributes} if attributes else {})
        operation = WithStartWorkflowOperation(DeploymentWorkflow.run, state, **options)
        try:
            return await client.start_update_with_start_workflow(
                DeploymentWorkflow.up,
                spec,
                start_workflow_operation=operation,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
        except RPCError as err:
            # The operation holds the same failure for its workflow handle: take it, or asyncio
            # prints "Future exception was never retrieved" with a traceback when it is collected.
            with contextlib.suppress(RPCError):
                await operation.workflow_handle()
            if attributes is None or not missing_attributes(err):
                raise
            if attributes is choices[0]:
                output.note(MISSING_ATTRIBUTES_NOTE)
    raise AssertionError("unreachable")


async def start_no_wait(
    client: Client, spec: DeploymentSpec, state: DeploymentState, output: Output
) -> WorkflowHandle:
    """`--no-wait` on a deployment whose workflow does not run: started with the spec in its input,
    so nothing waits for a worker to accept an update."""
    state = state.model_copy(update={"requested": spec})
    for attributes in search_attributes.for_deployment(spec.deployment_id, DeploymentPhase.NEW.value):
        options = start_options(spec) | ({"search_attributes": attributes} if attributes else {})
        try:
            return await client.start_workflow(DeploymentWorkflow.run, state, **options)
        except RPCError as err:
            if attributes is None or not missing_attributes(err):
                raise
    raise AssertionError("unreachable")


async def up(spec: DeploymentSpec, as_json: bool, wait: bool) -> int:
    output = Output(as_json)
    client = await connect()
    entity = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(spec.deployment_id))
    known = await describe(entity)
    legacy = await describe(client.get_workflow_handle(deploy_workflow_id(spec.deployment_id)))
    if not running(known) and running(legacy):
        # A standalone run started before the long-lived workflow existed: attach to it as before.
        return await commands.up(spec, as_json, wait)
    await note_missing_workers(client, output)
    link = ui_link(client, entity.id, None)
    if link:
        output.note(f"Temporal UI: {link}")
    base = {"deployment_id": spec.deployment_id, "workflow_id": entity.id, "ui": link}
    status = await status_of(entity) if running(known) else None
    if status is not None and status.running is not None and status.running_spec == spec:
        output.note(
            f"attaching to the running deployment {spec.deployment_id} "
            f"(its {status.running.value} of this spec is in progress)"
        )
        if not wait:
            output.result({**base, "status": "RUNNING"})
            return EXIT_OK
        result = asyncio.ensure_future(operation_ended(entity, status.state.operations))
        return await follow(client, entity, result, output, base)
    state = await first_state(client, spec, known)
    if not wait and not running(known):
        await start_no_wait(client, spec, state, output)
        output.result({**base, "status": "RUNNING"})
        return EXIT_OK
    try:
        update = await send_up(client, spec, state, output)
    except WorkflowUpdateFailedError as err:
        return rejected(err, output, base)
    if not wait:
        output.result({**base, "status": "RUNNING"})
        return EXIT_OK
    return await follow(client, entity, asyncio.ensure_future(outlive_outages(update, output)), output, base)


async def operation_ended(entity: WorkflowHandle, operations_before: int) -> OperationResult:
    """For an attached `up`: the running operation's result, once the state records it."""
    while True:
        status = await status_of(entity)
        if status is not None and status.state.operations > operations_before and status.state.last:
            return status.state.last
        await asyncio.sleep(POLL_SECONDS)


def rejected(err: WorkflowUpdateFailedError, output: Output, base: dict[str, Any]) -> int:
    message = root_message(err)
    output.note(f"[bold red]rejected:[/] {message}")
    output.result({**base, "status": "REJECTED", "error": message, "alb_dns_name": None})
    return EXIT_NOT_APPLICABLE


async def follow(
    client: Client, entity: WorkflowHandle, result: asyncio.Future, output: Output, base: dict[str, Any]
) -> int:
    """Show the operation's progress until it ends (or its create pauses), then what it did."""
    progress = await show_progress(OperationProgress(client, entity), result, output)  # type: ignore[arg-type]
    if not result.done() and progress is not None and progress.phase is Phase.PAUSED:
        result.cancel()
        with contextlib.suppress(BaseException):  # the update's poll ends in its own error: retrieved
            await result
        return paused(progress, output, base)
    try:
        done: OperationResult = await result
    except WorkflowUpdateFailedError as err:
        return rejected(err, output, base)
    return report(done, progress, output, base)


def report(
    done: OperationResult, progress: DeploymentProgress | None, output: Output, base: dict[str, Any]
) -> int:
    deployment_id = base["deployment_id"]
    base = {**base, "operation": done.operation.value, "operation_workflow_id": done.workflow_id}
    if done.outcome is Outcome.REFUSED:
        output.note(f"[bold red]refused:[/] {done.message}")
        actions = [a.model_dump(mode="json") for a in done.refused]
        output.result(
            {**base, "status": "REFUSED", "error": done.message, "actions": actions, "alb_dns_name": None}
        )
        return EXIT_NOT_APPLICABLE
    if done.outcome in (Outcome.FAILED, Outcome.CANCELLED):
        status = done.outcome.name
        output.note(f"[bold red]deployment {deployment_id} {status.lower()}:[/] {done.message}")
        left_behind = progress.left_behind if progress is not None else None
        output.result(
            {
                **base,
                "status": status,
                "error": done.message,
                "left_behind": left_behind,
                "alb_dns_name": None,
            }
        )
        return EXIT_DEPLOYMENT_FAILED
    if done.outcome is Outcome.UNCHANGED:
        output.note(f"{deployment_id} already runs this spec: nothing to change")
    elif done.converge is not None:
        launched, terminated = done.converge.launched, done.converge.terminated
        output.note(f"{deployment_id} converged: launched {len(launched)}, terminated {len(terminated)}")
    outputs = done.outputs
    if outputs is None:  # adopted without the standalone run's outputs: what the converge knows
        fleet = done.converge.instance_ids if done.converge else {}
        output.result({**base, "status": "COMPLETED", "alb_dns_name": None, "instance_ids": fleet})
        return EXIT_OK
    output.result(
        {**base, "status": "COMPLETED", **outputs.model_dump(mode="json")}, render.outputs_table(outputs)
    )
    if not output.as_json:
        output.out.print(f"\n[bold green]{outputs.url}[/]  (ALB {outputs.alb_dns_name})", soft_wrap=True)
    return EXIT_OK


async def down(deployment_id: str, region: str | None, as_json: bool) -> int:
    """The deployment workflow's `down` when it runs (an operation running is cancelled and rolls
    back first); else the teardown workflow as before (deployments of standalone runs, or gone)."""
    client = await connect()
    entity = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(deployment_id))
    if not running(await describe(entity)):
        return await commands.down(deployment_id, region, as_json)
    output = Output(as_json)
    await note_missing_workers(client, output)
    status = await status_of(entity)
    if status is not None and status.running is not None:
        output.note(f"cancelling the running {status.running.value} of {deployment_id} first")
    try:
        result: DownResult = await entity.execute_update(DeploymentWorkflow.down, DownRequest(region=region))
    except WorkflowUpdateFailedError as err:
        raise UserError(f"{deployment_id}: {root_message(err)}", EXIT_DEPLOYMENT_FAILED) from None
    if result.outcome is not Outcome.COMPLETED or result.teardown is None:
        output.note(f"[bold red]teardown of {deployment_id} incomplete:[/] {result.message}")
        output.result({"deployment_id": deployment_id, "status": "FAILED", "error": result.message})
        return EXIT_DEPLOYMENT_FAILED
    teardown: TeardownResult = result.teardown
    deleted = [d.model_dump(mode="json") for d in teardown.deleted if d.id]
    final = await entity.result()
    if not deleted:
        output.note(f"nothing of {deployment_id} was left in {final.region}")
    output.result(
        {"deployment_id": deployment_id, "status": "DELETED", "region": final.region, "deleted": deleted},
        render.teardown_table(teardown),
    )
    return EXIT_OK


async def ready_state(client: Client, deployment_id: str) -> DeploymentStatus | None:
    """The deployment workflow's status when it runs and is between operations on a live spec:
    then its outputs (converged since its create) are the deployment's, not its create's."""
    entity = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(deployment_id))
    if not running(await describe(entity)):
        return None
    status = await status_of(entity)
    ready = status is not None and status.state.phase is DeploymentPhase.READY and status.running is None
    return status if ready else None


async def status(deployment_id: str, as_json: bool) -> int:
    """A deployment at rest under its workflow: COMPLETED with its outputs now and its last operation;
    anything else (an operation running, a create that failed or paused) as the operation's run shows it."""
    client = await connect()
    current = await ready_state(client, deployment_id)
    if current is None or current.state.outputs is None:
        found = await running_operation(client, deployment_id)
        child = found[1].child_workflow_id if found else None  # a change running, or paused
        return await commands.status(deployment_id, as_json, child)
    output = Output(as_json)
    state, outputs = current.state, current.state.outputs
    entity_id = workflow_id(deployment_id)
    payload: dict[str, Any] = {
        "deployment_id": deployment_id,
        "workflow_id": entity_id,
        "status": "COMPLETED",
        "phase": state.phase.value,
        "last_operation": state.last.model_dump(mode="json", exclude={"outputs"}) if state.last else None,
        "ui": ui_link(client, entity_id, None),
        **outputs.model_dump(mode="json"),
    }
    last = state.last
    if last is not None and last.outcome in (Outcome.FAILED, Outcome.REFUSED, Outcome.CANCELLED):
        payload["error"] = last.message
    payload["drift"] = state.drift.model_dump(mode="json") if state.drift else None
    payload["drifted"] = state.drift.drifted if state.drift else None
    payload["expires_at"] = state.expires_at.isoformat() if state.expires_at else None
    if not as_json:
        note = f" (last {last.operation.value}: {last.outcome.value})" if last else ""
        output.out.print(f"{deployment_id}: COMPLETED, {state.phase.value}{note}")
        for line in upkeep_lines(state):
            output.out.print(line, soft_wrap=True)
    tables = [render.drift_table(state.drift)] if state.drift and state.drift.drifted else []
    output.result(payload, render.outputs_table(outputs), *tables)
    return EXIT_OK


def upkeep_lines(state: DeploymentState) -> list[str]:
    """Drift and time-to-live, in words, for `status`."""
    lines = []
    if state.drift is not None:
        checked = f"{state.drift.checked_at:%Y-%m-%d %H:%M:%S} UTC"
        verdict = "[bold yellow]drifted[/]" if state.drift.drifted else "no drift"
        lines.append(f"drift: {verdict} (checked {checked}; `starter.py check {state.deployment_id}`)")
    if state.expires_at is not None:
        lines.append(f"expires: {state.expires_at:%Y-%m-%d %H:%M:%S} UTC (time-to-live; `starter.py extend`)")
    return lines


async def outputs(deployment_id: str) -> int:
    """The deployment's outputs now (after any converge), else those of its completed create."""
    client = await connect()
    current = await ready_state(client, deployment_id)
    if current is None or current.state.outputs is None:
        return await commands.outputs(deployment_id)
    print(json.dumps(current.state.outputs.model_dump(mode="json"), indent=2))
    return EXIT_OK


async def running_operation(
    client: Client, deployment_id: str
) -> tuple[WorkflowHandle, DeploymentStatus] | None:
    """The deployment workflow and its status while it runs a converge; None otherwise (a create is
    its child `deploy-<id>`, which `cancel` and `watch` address as before)."""
    entity = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(deployment_id))
    if not running(await describe(entity)):
        return None
    status = await status_of(entity)
    if status is None or status.running is not Operation.CONVERGE or status.child_workflow_id is None:
        return None
    return entity, status


async def cancel(deployment_id: str, as_json: bool) -> int:
    """A running converge is cancelled like a create: it rolls back to the previous instances."""
    client = await connect()
    found = await running_operation(client, deployment_id)
    if found is None:
        return await commands.cancel(deployment_id, as_json)
    entity, status = found
    output = Output(as_json)
    assert status.child_workflow_id is not None and status.running is not None
    child = client.get_workflow_handle(status.child_workflow_id)
    await child.cancel()
    output.note(f"cancel requested; the {status.running.value} of {deployment_id} is rolling back")
    result = asyncio.ensure_future(operation_ended(entity, status.state.operations))
    code = await follow_running(client, entity, result, output)
    if code != EXIT_DEPLOYMENT_FAILED:
        return code
    progress = await child.query("progress", result_type=DeploymentProgress, rpc_timeout=QUERY_TIMEOUT)
    cancelled = (await result).outcome is Outcome.CANCELLED
    return EXIT_OK if cancelled and not progress.left_behind else EXIT_DEPLOYMENT_FAILED


async def decide(deployment_id: str, choice: str, as_json: bool) -> int:
    """`retry` or `rollback` of a paused change: the update (same name as a create's) goes to the
    running converge child, then the change is followed until it ends or pauses again; anything
    else (a paused create, `deploy-<id>`) as before."""
    client = await connect()
    found = await running_operation(client, deployment_id)
    if found is None:
        return await commands.decide(deployment_id, choice, as_json)
    entity, status = found
    assert status.child_workflow_id is not None
    output = Output(as_json)
    child = client.get_workflow_handle(status.child_workflow_id)
    try:
        answer = await child.execute_update(choice, result_type=str, rpc_timeout=QUERY_TIMEOUT)
    except WorkflowUpdateFailedError as err:
        raise UserError(f"{deployment_id}: {root_message(err)}") from None
    output.note(f"{deployment_id}: {answer}")
    result = asyncio.ensure_future(operation_ended(entity, status.state.operations))
    code = await follow_running(client, entity, result, output)
    return EXIT_OK if choice == "rollback" and code == EXIT_DEPLOYMENT_FAILED else code  # as asked


async def watch(deployment_id: str, as_json: bool) -> int:
    """Follow a running converge until it ends; anything else as before."""
    client = await connect()
    found = await running_operation(client, deployment_id)
    if found is None:
        return await commands.watch(deployment_id, as_json)
    entity, status = found
    result = asyncio.ensure_future(operation_ended(entity, status.state.operations))
    return await follow_running(client, entity, result, Output(as_json))


async def follow_running(
    client: Client, entity: WorkflowHandle, result: asyncio.Future, output: Output
) -> int:
    deployment_id = entity.id.removeprefix(workflow_id(""))
    base = {"deployment_id": deployment_id, "workflow_id": entity.id, "ui": ui_link(client, entity.id, None)}
    return await follow(client, entity, result, output, base)
