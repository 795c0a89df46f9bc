"""The starter's commands: each connects, does one thing, and returns an exit code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.live import Live
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode

from cli import listing, render
from cli.connection import connect, task_queue
from cli.errors import UserError
from models.cost import estimate, estimate_live
from models.diff import Action, diff, inapplicable, refusal
from models.live import InspectInput, LiveDeployment
from models.plan import PlanReport, changes
from models.progress import DeploymentProgress, Phase
from models.resources import DeploymentOutputs, Scope, TeardownInput, TeardownResult
from models.spec import DeploymentSpec, TimingSpec
from workflows import search_attributes
from workflows.deploy import DeployWorkflow
from workflows.deploy import workflow_id as deploy_workflow_id
from workflows.plan import InspectWorkflow, PlanWorkflow
from workflows.saga import root_message
from workflows.teardown import TeardownWorkflow
from workflows.teardown import workflow_id as teardown_workflow_id

EXIT_OK = 0
EXIT_DEPLOYMENT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PAUSED = 3
EXIT_UNKNOWN_DEPLOYMENT = 4
EXIT_NOT_APPLICABLE = 5
"""Nothing was changed: `up` cannot apply the change to the live deployment (neither a create nor the
converge applies it), or another operation of the deployment runs."""
POLL_SECONDS = 0.5
QUERY_TIMEOUT = timedelta(seconds=10)
INSPECT_TIMEOUT = timedelta(minutes=2)
OUTAGE_PATIENCE = timedelta(minutes=10)
TRANSIENT_RPC = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNKNOWN)


class Output:
    """Progress to stderr, results to stdout; `--json` prints exactly one object on stdout."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.err = render.stderr_console()
        self.out = render.stdout_console()

    def note(self, text: str) -> None:
        self.err.print(text, soft_wrap=True)

    def result(self, payload: dict[str, Any], *tables: Any) -> None:
        if self.as_json:
            print(json.dumps(payload, indent=2, default=str))
            return
        for table in tables:
            self.out.print(table)


def ui_link(client: Client, workflow_id: str, run_id: str | None) -> str | None:
    base = os.environ.get("TEMPORAL_UI_URL")
    if base is None:
        host = client.service_client.config.target_host.split(":")[0]
        if host not in ("localhost", "127.0.0.1"):
            return None
        base = "http://localhost:8233"
    path = f"{base.rstrip('/')}/namespaces/{client.namespace}/workflows/{workflow_id}"
    return f"{path}/{run_id}/history" if run_id else path


async def describe(handle: WorkflowHandle) -> WorkflowExecutionDescription | None:
    try:
        return await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def running(description: WorkflowExecutionDescription | None) -> bool:
    return description is not None and description.status == WorkflowExecutionStatus.RUNNING


def failure_message(err: WorkflowFailureError, progress: DeploymentProgress | None = None) -> str:
    """The workflow's own one-paragraph account (failed step, AWS's words, what was rolled back).

    A cancelled run ends with no message of its own: what its rollback could not delete comes from
    its progress, and without that nothing is claimed."""
    if isinstance(err.cause, CancelledError):
        if progress is None:
            return "cancelled; whether its rollback removed everything is unknown (no worker answered)"
        if progress.left_behind:
            return (
                "cancelled; rollback could not delete: "
                + "; ".join(progress.left_behind)
                + f" (run 'starter.py down {progress.deployment_id}' to retry)"
            )
        return "cancelled; everything the run created was rolled back"
    if isinstance(err.cause, ApplicationError) and err.cause.type in (
        "DeploymentFailed",
        "TeardownIncomplete",
    ):
        return err.cause.message
    return root_message(err)


async def note_missing_workers(client: Client, output: Output) -> None:
    """Say so when no worker polls our task queue: the run would wait for one in silence."""
    queue = task_queue()
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    try:
        response = await client.workflow_service.describe_task_queue(request)
    except RPCError:
        return  # a hint only: a server that will not say is no reason to stop
    if not response.pollers:
        output.note(
            f"[yellow]no worker polls task queue '{queue}' in namespace '{client.namespace}'[/]: "
            "this waits until one starts (`python worker.py` with the same TEMPORAL_* settings)"
        )


# plan


async def plan(spec: DeploymentSpec, as_json: bool) -> int:
    """Read-only: problems with their fixes, then for a new deployment what `up` would create and its
    cost, for a live one the diff per resource and the cost before and after."""
    output = Output(as_json)
    client = await connect()
    await note_missing_workers(client, output)
    try:
        report: PlanReport = await client.execute_workflow(
            PlanWorkflow.run,
            spec,
            id=f"plan-{spec.deployment_id}-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue(),
            static_summary=f"Plan {spec.deployment_id} in {spec.region} (read-only)",
        )
    except WorkflowFailureError as err:
        message = f"plan could not check the account: {root_message(err)}"
        raise UserError(message, EXIT_DEPLOYMENT_FAILED) from None
    description = await describe(client.get_workflow_handle(deploy_workflow_id(spec.deployment_id)))
    live = None
    if description is not None or report.existing:
        live = await inspect_live(client, spec, description)
    if live is not None and live.exists:
        return plan_change(spec, report, live, running(description), output)
    planned = changes(spec, report.existing)
    cost = estimate(spec)
    payload = {
        "deployment_id": spec.deployment_id,
        "region": spec.region,
        "ready": not report.problems,
        "problems": report.problems,
        "changes": [change.model_dump(mode="json") for change in planned],
        "cost": cost.model_dump(mode="json"),
    }
    output.result(payload, render.plan_table(spec.deployment_id, planned), render.cost_table(cost))
    if not noted_problems(report, output):
        return EXIT_BAD_INPUT
    creates = sum(1 for change in planned if change.action == "create")
    output.note(f"ready: {creates} to create, {len(planned) - creates} already there")
    return EXIT_OK


def noted_problems(report: PlanReport, output: Output) -> bool:
    """True when preflight found nothing in the way."""
    for problem in report.problems:
        output.note(f"[bold red]problem:[/] {problem}")
    if report.problems:
        output.note(f"{len(report.problems)} problem(s); `up` would stop at preflight and create nothing")
    return not report.problems


def plan_change(
    spec: DeploymentSpec, report: PlanReport, live: LiveDeployment, in_flight: bool, output: Output
) -> int:
    """A live deployment: per resource what the spec changes (like `terraform plan`) and the cost."""
    actions = diff(spec, live)
    before = estimate_live(live, spec.instances.root_volume_gib)
    after = estimate(spec)
    refused = inapplicable(actions)  # what `up` refuses: neither a create nor the converge applies it
    payload = {
        "deployment_id": spec.deployment_id,
        "region": spec.region,
        "live_region": live.region,
        "ready": not report.problems,
        "problems": report.problems,
        "applicable_by_up": not refused,
        "actions": [action.model_dump(mode="json") for action in actions],
        "changes": [change.model_dump(mode="json") for change in changes(spec, report.existing)],
        "cost_before": before.model_dump(mode="json"),
        "cost": after.model_dump(mode="json"),
        "hourly_delta_usd": round(after.hourly_usd - before.hourly_usd, 4),
    }
    output.result(
        payload,
        render.diff_table(spec.deployment_id, actions),
        render.cost_change_table(before, after),
    )
    if in_flight:
        output.note(
            f"a run of {spec.deployment_id} is in progress: what it has not created yet shows as create"
        )
    if not noted_problems(report, output):
        return EXIT_BAD_INPUT
    if refused:
        output.note(
            "[bold yellow]`up` would refuse this:[/] " + refusal(spec.deployment_id, live.region, refused)
        )
        return EXIT_NOT_APPLICABLE
    counts = Counter(a.action.value for a in actions if a.action is not Action.UNCHANGED)
    applied = ", ".join(f"{n} {action}" for action, n in counts.items()) or "nothing to change"
    output.note(f"ready: `up` applies it ({applied}); the other resources stay as they are")
    return EXIT_OK


async def inspect_live(
    client: Client, spec: DeploymentSpec, description: WorkflowExecutionDescription | None
) -> LiveDeployment:
    """What the deployment has live, read by the worker in the region its last run used."""
    region = (await description.memo_value("region", None)) if description else None
    scope = Scope(deployment_id=spec.deployment_id, region=region or spec.region)
    try:
        return await client.execute_workflow(
            InspectWorkflow.run,
            InspectInput(scope=scope, timing=spec.timing),
            id=f"inspect-{spec.deployment_id}-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue(),
            execution_timeout=INSPECT_TIMEOUT,
            static_summary=f"Read what {spec.deployment_id} has live in {scope.region} (read-only)",
        )
    except WorkflowFailureError as err:
        message = (
            f"could not read what {spec.deployment_id} has live in {scope.region}: {root_message(err)} "
            "(is `worker.py` running with AWS access?)"
        )
        raise UserError(message, EXIT_DEPLOYMENT_FAILED) from None


# up


async def up(spec: DeploymentSpec, as_json: bool, wait: bool) -> int:
    """Attach to a standalone `deploy-<id>` run started before the long-lived deployment workflow:
    cli/deployment.py `up` comes here only while one runs, and its own spec applies. By its handle,
    never a start: a run that ended meanwhile must not be followed by a second standalone one."""
    output = Output(as_json)
    client = await connect()
    handle = client.get_workflow_handle_for(DeployWorkflow.run, deploy_workflow_id(spec.deployment_id))
    output.note(f"attaching to the running deployment {spec.deployment_id} (its own spec applies)")
    await note_missing_workers(client, output)
    link = ui_link(client, handle.id, None)
    if link:
        output.note(f"Temporal UI: {link}")
    if not wait:
        output.result(
            {"deployment_id": spec.deployment_id, "workflow_id": handle.id, "status": "RUNNING", "ui": link}
        )
        return EXIT_OK
    return await follow(handle, output, spec.deployment_id, link)


async def start_deployment(client: Client, spec: DeploymentSpec, output: Output) -> WorkflowHandle:
    options: dict[str, Any] = dict(
        id=deploy_workflow_id(spec.deployment_id),
        task_queue=task_queue(),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo={"deployment_id": spec.deployment_id, "region": spec.region},
        static_summary=f"Deploy {spec.deployment_id} to {spec.region}",
        static_details=(
            f"Web tier: {spec.instances.count} x {spec.instances.instance_type} behind an ALB, "
            f"NAT mode {spec.nat_mode.value}, on failure {spec.on_failure.value}, private subnets "
            + ", ".join(f"{s.cidr} ({s.availability_zone})" for s in spec.private_subnets)
        ),
    )
    attributes = search_attributes.at_start(spec.deployment_id, Phase.PREFLIGHT.value)
    try:
        return await client.start_workflow(DeployWorkflow.run, spec, search_attributes=attributes, **options)
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT or "search attribute" not in err.message.lower():
            raise
    output.note(
        "note: this namespace has no DeploymentId/DeploymentPhase search attributes, so `list --phase` "
        "and the UI cannot filter by them; register them as docs/temporal-connection.md shows"
    )
    return await client.start_workflow(DeployWorkflow.run, spec, **options)


async def follow(handle: WorkflowHandle, output: Output, deployment_id: str, link: str | None) -> int:
    """Show progress until the run ends (or pauses), then its outputs or its one-paragraph error."""
    result = asyncio.ensure_future(outlive_outages(handle, output))
    progress = await show_progress(handle, result, output)
    base = {"deployment_id": deployment_id, "workflow_id": handle.id, "ui": link}
    if not result.done() and progress is not None and progress.phase is Phase.PAUSED:
        result.cancel()
        return paused(progress, output, base)
    try:
        outputs: DeploymentOutputs = await result
    except WorkflowFailureError as err:
        status = "CANCELLED" if isinstance(err.cause, CancelledError) else "FAILED"
        final = await query_progress(handle) or progress
        message = failure_message(err, final)
        output.note(f"[bold red]deployment {deployment_id} {status.lower()}:[/] {message}")
        left_behind = final.left_behind if final is not None else None
        output.result(
            {**base, "status": status, "error": message, "left_behind": left_behind, "alb_dns_name": None}
        )
        return EXIT_DEPLOYMENT_FAILED
    output.result(
        {**base, "status": "COMPLETED", **outputs.model_dump(mode="json")},
        render.outputs_table(outputs),
    )
    if not output.as_json:
        output.out.print(f"\n[bold green]{outputs.url}[/]  (ALB {outputs.alb_dns_name})", soft_wrap=True)
        if link:
            output.out.print(f"Temporal UI: {link}", soft_wrap=True)
    return EXIT_OK


async def outlive_outages(handle: WorkflowHandle, output: Output) -> Any:
    """The run's result; a Temporal server that restarts meanwhile only delays it.

    The deployment itself survives the outage (its state is in the server's database); the client's own
    RPC retries give up after a few seconds, so keep asking for as long as `OUTAGE_PATIENCE` allows.
    """
    deadline = asyncio.get_running_loop().time() + OUTAGE_PATIENCE.total_seconds()
    while True:
        try:
            return await handle.result()
        except RPCError as err:
            if err.status not in TRANSIENT_RPC or asyncio.get_running_loop().time() > deadline:
                raise
            output.note(f"Temporal server unreachable ({err.message}); still waiting for the deployment")
            await asyncio.sleep(POLL_SECONDS * 4)


def paused(progress: DeploymentProgress, output: Output, base: dict[str, Any]) -> int:
    """A run paused after a failure (`on_failure: pause`): what failed and what to run next."""
    output.note(f"[bold yellow]deployment {progress.deployment_id} paused:[/] {paused_message(progress)}")
    payload = {**base, "status": "PAUSED", "error": progress.error}
    output.result({**payload, "progress": progress.model_dump(mode="json")})
    return EXIT_PAUSED


def paused_message(progress: DeploymentProgress) -> str:
    deadline = progress.pause_deadline
    when = f" (rolls back by itself at {deadline:%Y-%m-%d %H:%M:%S} UTC)" if deadline else ""
    failed = progress.failed_step or "a step"
    return (
        f"step '{failed}' failed: {progress.error}. Everything created so far is kept. Remove the cause, "
        f"then run 'starter.py retry {progress.deployment_id}' to run the step again and go on, or "
        f"'starter.py rollback {progress.deployment_id}' to undo everything this run did{when}."
    )


async def show_progress(
    handle: WorkflowHandle, result: asyncio.Future, output: Output
) -> DeploymentProgress | None:
    """Until the run ends or pauses; returns the last progress seen."""
    live = output.err.is_terminal and not output.as_json
    seen: dict[str, str] = {}
    context = Live(console=output.err, refresh_per_second=4, transient=False) if live else None
    if context:
        context.start()
    progress = None
    try:
        while True:
            finished = result.done()  # one last look after the end shows the final states
            progress = await query_progress(handle) or progress
            if progress is not None:
                now = datetime.now(UTC)
                if context:
                    context.update(render.progress_table(progress, now))
                else:
                    for step in progress.steps:
                        state = f"{step.state}:{step.resource_id}"
                        if seen.get(step.key) != state and step.state != "pending":
                            seen[step.key] = state
                            output.note(render.step_line(step, now))
            if finished or (progress is not None and progress.phase is Phase.PAUSED):
                return progress
            await asyncio.wait([result], timeout=POLL_SECONDS)
    finally:
        if context:
            context.stop()


async def query_progress(handle: WorkflowHandle) -> DeploymentProgress | None:
    """None while no worker answers: the run goes on, and so does waiting for it."""
    try:
        return await handle.query(DeployWorkflow.progress, rpc_timeout=QUERY_TIMEOUT)
    except Exception:  # noqa: BLE001 - no answer (no worker yet, server restarting) is not an error here
        return None


# status, cancel, list


async def deployment_handle(
    client: Client, deployment_id: str, workflow_id: str | None = None
) -> tuple[WorkflowHandle, Any]:
    """The deployment's standalone run, or `workflow_id` (the operation its long-lived workflow runs)."""
    handle = client.get_workflow_handle_for(
        DeployWorkflow.run, workflow_id or deploy_workflow_id(deployment_id)
    )
    description = await describe(handle)
    if description is None:
        raise UserError(
            f"no deployment named {deployment_id!r} in namespace {client.namespace}; "
            "`starter.py list` shows the deployments",
            EXIT_UNKNOWN_DEPLOYMENT,
        )
    return handle, description


async def status(deployment_id: str, as_json: bool, workflow_id: str | None = None) -> int:
    output = Output(as_json)
    client = await connect()
    handle, description = await deployment_handle(client, deployment_id, workflow_id)
    state = description.status.name if description.status else "UNKNOWN"
    payload: dict[str, Any] = {
        "deployment_id": deployment_id,
        "workflow_id": handle.id,
        "status": state,
        "ui": ui_link(client, handle.id, description.run_id),
    }
    tables: list[Any] = []
    if state == "COMPLETED":
        outputs: DeploymentOutputs = await handle.result()
        payload.update(outputs.model_dump(mode="json"))
        tables.append(render.outputs_table(outputs))
    elif state == "RUNNING":
        progress = await query_progress(handle)
        if progress is None:
            output.note("no worker answered; is `worker.py` running?")
        else:
            payload["progress"] = progress.model_dump(mode="json")
            tables.append(render.progress_table(progress, datetime.now(UTC)))
            if progress.phase is Phase.PAUSED:
                state = payload["status"] = "PAUSED"
                payload["error"] = paused_message(progress)
    else:
        try:
            await handle.result()
        except WorkflowFailureError as err:
            final = await query_progress(handle)
            payload["error"] = failure_message(err, final)
            if final is not None:
                payload["left_behind"] = final.left_behind
    if not as_json:
        output.out.print(
            f"{deployment_id}: {state}" + (f" - {payload['error']}" if "error" in payload else "")
        )
    output.result(payload, *tables)
    return EXIT_OK


async def cancel(deployment_id: str, as_json: bool) -> int:
    output = Output(as_json)
    client = await connect()
    handle, description = await deployment_handle(client, deployment_id)
    if not running(description):
        output.result({"deployment_id": deployment_id, "status": description.status.name})
        output.note(f"{deployment_id} is not running ({description.status.name}); nothing to cancel")
        return EXIT_OK
    await handle.cancel()
    output.note(f"cancel requested; {deployment_id} is rolling back")
    code = await follow(handle, output, deployment_id, ui_link(client, handle.id, description.run_id))
    if code != EXIT_DEPLOYMENT_FAILED:
        return code
    # Cancelled: a success only when its rollback is known to have removed everything.
    final = await query_progress(handle)
    return EXIT_OK if final is not None and not final.left_behind else EXIT_DEPLOYMENT_FAILED


async def watch(deployment_id: str, as_json: bool) -> int:
    """Follow a deployment started elsewhere, live, until it ends or pauses."""
    output = Output(as_json)
    client = await connect()
    handle, description = await deployment_handle(client, deployment_id)
    link = ui_link(client, handle.id, description.run_id)
    if link:
        output.note(f"Temporal UI: {link}")
    return await follow(handle, output, deployment_id, link)


async def outputs(deployment_id: str) -> int:
    """The outputs of a completed deployment as JSON, for scripts."""
    client = await connect()
    handle, description = await deployment_handle(client, deployment_id)
    if description.status != WorkflowExecutionStatus.COMPLETED:
        state = description.status.name if description.status else "UNKNOWN"
        raise UserError(
            f"{deployment_id} has no outputs: it is {state}, not COMPLETED; "
            f"`starter.py status {deployment_id}` tells why",
            EXIT_DEPLOYMENT_FAILED,
        )
    result: DeploymentOutputs = await handle.result()
    print(json.dumps(result.model_dump(mode="json"), indent=2))
    return EXIT_OK


async def decide(deployment_id: str, choice: str, as_json: bool) -> int:
    """`retry` or `rollback` a paused deployment, then follow it."""
    output = Output(as_json)
    client = await connect()
    handle, description = await deployment_handle(client, deployment_id)
    if not running(description):
        state = description.status.name if description.status else "UNKNOWN"
        raise UserError(f"{deployment_id} is {state}, not paused; only a paused deployment takes {choice}")
    await note_missing_workers(client, output)
    update = DeployWorkflow.retry if choice == "retry" else DeployWorkflow.rollback
    try:
        answer = await handle.execute_update(update, rpc_timeout=QUERY_TIMEOUT)
    except WorkflowUpdateFailedError as err:
        raise UserError(f"{deployment_id}: {root_message(err)}") from None
    output.note(f"{deployment_id}: {answer}")
    code = await follow(handle, output, deployment_id, ui_link(client, handle.id, description.run_id))
    if choice == "rollback" and code == EXIT_DEPLOYMENT_FAILED:
        return EXIT_OK  # rolled back, as asked
    return code


async def list_deployments(as_json: bool, phase: str | None = None, drifted: bool = False) -> int:
    """Each deployment once, newest first (cli/listing.py); `--json`: one object per deployment."""
    output = Output(as_json)
    client = await connect()
    rows = await listing.deployments(client, phase, drifted)
    table = render.Table(title="Deployments")
    for column in ("deployment", "phase", "drifted", "expires", "region", "started"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.deployment_id + (" (standalone run)" if row.standalone else ""),
            row.phase or row.status.lower(),
            {True: "yes", False: "no", None: ""}[row.drifted],
            f"{row.expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if row.expires else "",
            row.region or "",
            f"{row.started.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        )
    output.result({"deployments": [row.model_dump(mode="json") for row in rows]}, table)
    if any(row.phase is None for row in rows):
        output.note(
            "note: deployments without a phase started on a namespace without the DeploymentPhase "
            "search attribute; register it (docs/temporal-connection.md) to filter with --phase"
        )
    return EXIT_OK


# down


async def down(deployment_id: str, region: str | None, as_json: bool) -> int:
    """Stop a running deployment (it rolls back), then delete whatever still carries its tag."""
    output = Output(as_json)
    client = await connect()
    deploy = client.get_workflow_handle(deploy_workflow_id(deployment_id))
    description = await describe(deploy)
    await note_missing_workers(client, output)
    if running(description):
        output.note(f"cancelling the running deployment {deployment_id} first")
        await deploy.cancel()
        with contextlib.suppress(WorkflowFailureError):
            await deploy.result()
    if region is None:
        region = (await description.memo_value("region", None)) if description else None
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        region = region or DeploymentSpec.model_fields["region"].default
    handle = await client.start_workflow(
        TeardownWorkflow.run,
        TeardownInput(scope=Scope(deployment_id=deployment_id, region=region), timing=TimingSpec()),
        id=teardown_workflow_id(deployment_id),
        task_queue=task_queue(),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"Tear down {deployment_id} in {region}",
    )
    try:
        result: TeardownResult = await handle.result()
    except WorkflowFailureError as err:
        message = failure_message(err)
        output.note(f"[bold red]teardown of {deployment_id} incomplete:[/] {message}")
        output.result({"deployment_id": deployment_id, "status": "FAILED", "error": message})
        return EXIT_DEPLOYMENT_FAILED
    deleted = [d.model_dump(mode="json") for d in result.deleted if d.id]
    if not deleted:
        output.note(f"nothing of {deployment_id} was left in {region}")
    output.result(
        {"deployment_id": deployment_id, "status": "DELETED", "region": region, "deleted": deleted},
        render.teardown_table(result),
    )
    return EXIT_OK
