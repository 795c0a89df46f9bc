"""One workflow per deployment for its whole life (`deployment-<id>`, Temporal's entity pattern).

`up(spec)` and `down()` are updates; the run loop waits for one, runs it as child workflows (the
tested DeployWorkflow, InspectWorkflow + ConvergeWorkflow, TeardownWorkflow: each run's history stays
small and each operation keeps its own history, progress query and UI page), records the result in
the state, and continues as new carrying the state once every handler has finished.

One operation at a time: an `up` arriving while another operation runs (or is accepted and about to)
is rejected by its validator, naming what runs; nothing is queued, so a caller never waits behind a
change it did not see. `down` is different: it is accepted during an operation, cancels it (the
operation rolls itself back: a rollout puts the old instances back in service) and then tears down,
as `starter.py down` did for a running deployment before this workflow existed.

A deployment made by a standalone `deploy-<id>` run (before this workflow) is adopted on its first
`up`: every operation but a brand-new deployment's first starts by reading what is live by tags
(`adopted_from` says a run of something else came before), so a deployment this workflow did not
create is converged from what exists.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.drift import DriftActivities
    from activities.drift_repair import DriftRepairActivities
    from activities.network import NetworkActivities
    from models.converge import ConvergeInput, ConvergeResult
    from models.deployment import (
        DeploymentPhase,
        DeploymentState,
        DeploymentStatus,
        DownRequest,
        DownResult,
        ExtendRequest,
        ExtendResult,
        Operation,
        OperationResult,
        Outcome,
        completed_by_create,
        moved,
        needs_create,
        refused_move,
        with_fleet,
    )
    from models.diff import Action, ResourceAction, describe, diff, inapplicable
    from models.drift import CheckInput, Drift, DriftItem, DriftReport, RepairInput, RepairResult
    from models.live import InspectInput, LiveDeployment
    from models.naming import DEPLOYMENT_TAG
    from models.progress import DeploymentProgress, Phase
    from models.resources import (
        DeleteInput,
        DeploymentOutputs,
        Kind,
        ResourceKey,
        Scope,
        TeardownInput,
        TeardownResult,
    )
    from models.spec import DeploymentSpec, OnDrift, OnFailure
    from workflows import search_attributes
    from workflows.converge import ConvergeWorkflow
    from workflows.deploy import DeployWorkflow
    from workflows.deploy import workflow_id as deploy_workflow_id
    from workflows.options import activity_options, waiting
    from workflows.pause import OPERATION_PAUSED
    from workflows.plan import InspectWorkflow
    from workflows.saga import root_message
    from workflows.teardown import TeardownWorkflow
    from workflows.teardown import workflow_id as teardown_workflow_id

MIN_EVENTS_TO_SHED = 10
MAX_IDLE_EVENTS = 1000
"""Drift checks add a few events each to a run that waits between operations: past this many, the
run continues as new after its next check (most of a day of ten-minute checks)."""
UP_UNDOES_DRIFT = "up-undoes-drift"
"""The patch that made `up` put back, in place, what was changed by hand when the change is otherwise
refused; runs recorded before it refused."""
DRIFT_AND_TTL = "drift-checks-and-ttl"
"""The patch that gave the idle run loop its timers (drift checks, time-to-live): runs recorded before
it waited for an update only, and replay so."""

PROGRESS_PHASES = {
    DeploymentPhase.NEW: Phase.PREFLIGHT,
    DeploymentPhase.CREATING: Phase.CREATING,
    DeploymentPhase.CONVERGING: Phase.CREATING,
    DeploymentPhase.PAUSED: Phase.PAUSED,
    DeploymentPhase.READY: Phase.COMPLETED,
    DeploymentPhase.FAILED: Phase.FAILED,
    DeploymentPhase.TEARING_DOWN: Phase.ROLLING_BACK,
    DeploymentPhase.DELETED: Phase.COMPLETED,
}
"""The entity's phase in the terms of an operation's progress (`starter.py` renders both)."""


@workflow.defn
class DeploymentWorkflow:
    @workflow.init
    def __init__(self, state: DeploymentState) -> None:
        self._state = state
        self._pending: DeploymentSpec | None = None
        self._running: Operation | None = None
        self._running_spec: DeploymentSpec | None = None
        self._child_id: str | None = None
        self._operation: asyncio.Task[None] | None = None
        self._down: DownRequest | None = None
        self._down_result: DownResult | None = None
        self._continuing = False
        self._repairing: list[DriftItem] | None = None
        self._completing = False

    # Queries

    @workflow.query
    def status(self) -> DeploymentStatus:
        return DeploymentStatus(
            state=self._state,
            running=self._running,
            running_spec=self._running_spec or self._pending,
            child_workflow_id=self._child_id,
        )

    @workflow.query
    def progress(self) -> DeploymentProgress:
        """The entity's own account; an operation's steps are its child's `progress` query."""
        state, last = self._state, self._state.last
        failed = last is not None and last.outcome in (Outcome.FAILED, Outcome.REFUSED)
        return DeploymentProgress(
            deployment_id=state.deployment_id,
            region=state.region,
            phase=PROGRESS_PHASES[state.phase],
            outputs=state.outputs,
            error=last.message if failed and last else None,
        )

    # Signals

    @workflow.signal(name=OPERATION_PAUSED)
    def _operation_paused(self, paused: bool) -> None:
        """From the running operation (workflows/pause.py): paused, or going on again."""
        if self._running is None:
            return
        going_on = (
            DeploymentPhase.CREATING if self._running is Operation.CREATE else DeploymentPhase.CONVERGING
        )
        self._phase(DeploymentPhase.PAUSED if paused else going_on)

    # Updates

    @workflow.update
    async def up(self, spec: DeploymentSpec) -> OperationResult:
        """Converge the deployment to `spec`; answers once the operation has ended."""
        ticket = self._state.operations + 1
        self._pending = spec
        await workflow.wait_condition(lambda: self._state.operations >= ticket)
        assert self._state.last is not None
        return self._state.last

    @up.validator
    def _up_allowed(self, spec: DeploymentSpec) -> None:
        """Synchronous and read-only: a rejection leaves no event and changes nothing."""
        state = self._state
        if spec.deployment_id != state.deployment_id:
            raise ApplicationError(f"this is {state.deployment_id}'s workflow, not {spec.deployment_id}'s")
        busy = self._busy()
        if busy is not None:
            raise ApplicationError(f"{state.deployment_id} is busy: {busy}; nothing was changed")
        if state.spec is not None and (changes := moved(state.spec, spec)):
            raise ApplicationError(refused_move(state.deployment_id, changes))

    @workflow.update
    async def down(self, request: DownRequest) -> DownResult:
        """Tear the deployment down and end the workflow; an operation running is cancelled first."""
        self._down = request
        if self._operation is not None and not self._operation.done():
            self._operation.cancel()
        await workflow.wait_condition(lambda: self._down_result is not None)
        assert self._down_result is not None
        return self._down_result

    @down.validator
    def _down_allowed(self, request: DownRequest) -> None:
        if self._down is not None or self._continuing:
            raise ApplicationError(f"{self._state.deployment_id} is already being torn down")

    def _busy(self) -> str | None:
        """What keeps another operation from starting now, in words."""
        if self._down is not None:
            return "it is being torn down"
        if self._repairing is not None:
            return "a repair of its drift runs; wait for it (`starter.py watch`)"
        if self._running is not None and self._state.phase is DeploymentPhase.PAUSED:
            return (
                f"its {self._running.value} ({self._child_id}) is paused after a failure; decide first "
                f"(`starter.py retry {self._state.deployment_id}` or `rollback`)"
            )
        if self._running is not None:
            return f"a {self._running.value} runs ({self._child_id}); wait for it (`starter.py watch`)"
        if self._pending is not None or self._continuing:
            return "another `up` was accepted a moment ago; try again when it has finished"
        return None

    @workflow.update
    async def check(self) -> DriftReport:
        """Compare what is live with the spec now (read-only, whatever `drift.on_drift` says): the
        report is the deployment's drift from now on (status, UI, DeploymentDrift)."""
        assert self._state.spec is not None
        return await self._check_drift(self._state.spec)

    @check.validator
    def _check_allowed(self) -> None:
        state = self._state
        if state.spec is None or state.phase is not DeploymentPhase.READY:
            raise ApplicationError(
                f"{state.deployment_id} has nothing live to check (it is {state.phase.value})"
            )
        busy = self._busy()
        if busy is not None:
            raise ApplicationError(f"{state.deployment_id} is busy: {busy}; check again when it has finished")

    @workflow.update
    async def extend(self, request: ExtendRequest) -> ExtendResult:
        """Move the time-to-live's deadline later; answered at once."""
        state = self._state
        assert state.expires_at is not None
        state.expires_at += request.by
        self._deadline_changed()
        return ExtendResult(deployment_id=state.deployment_id, expires_at=state.expires_at)

    @extend.validator
    def _extend_allowed(self, request: ExtendRequest) -> None:
        state = self._state
        if request.by <= timedelta(0):
            raise ApplicationError("extend by a positive duration, e.g. 1h")
        if state.expired or self._down is not None:
            when = (
                f" at {state.expires_at:%Y-%m-%d %H:%M:%S} UTC" if state.expired and state.expires_at else ""
            )
            raise ApplicationError(
                f"{state.deployment_id} expired{when} and is being torn down; too late to extend it"
                if state.expired
                else f"{state.deployment_id} is being torn down; nothing to extend"
            )
        if state.expires_at is None:
            raise ApplicationError(
                f"{state.deployment_id} has no time-to-live; set one with `starter.py up --ttl 2h`"
            )

    # The run loop

    @workflow.run
    async def run(self, state: DeploymentState) -> DeploymentState:
        if self._state.requested is not None:
            self._pending, self._state.requested = self._state.requested, None
        self._show()
        while True:
            await self._idle()
            if self._pending is not None and self._down is None:
                spec, self._running_spec, accepted_at = self._pending, self._pending, workflow.now()
                self._operation = asyncio.create_task(self._apply(spec))
                await self._operation
                self._pending = self._operation = self._running_spec = None
                if self._state.spec == spec:
                    self._set_deadline(spec, accepted_at)
            elif self._down is None and self._expired():
                self._state.expired = True
                expires_at = self._state.expires_at
                assert expires_at is not None
                self._down = DownRequest(
                    reason=f"its time-to-live ended at {expires_at:%Y-%m-%d %H:%M:%S} UTC"
                )
            elif self._down is None and self._check_due():
                await self._scheduled_check()
                if self._down is None and (self._pending is not None or not self._idle_history_long()):
                    continue  # an `up` accepted during the check runs next, in this run
            elif self._down is None and not self._history_too_long():
                continue  # a timer set before `extend` or `check` moved what is due: wait again
            if self._down is not None:
                if self._pending is not None:  # accepted in the same moment as `down`
                    self._finish(Operation.NONE, Outcome.CANCELLED, message="`down` came first")
                    self._pending = None
                await self._teardown(self._down)
                if self._state.phase is DeploymentPhase.DELETED:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    return self._state
            # Between operations: the next run starts with the state only (and new worker code).
            self._continuing = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(self._state)

    async def _idle(self) -> None:
        """Wait for an update, or for the next timer: the time-to-live's deadline or a drift check.
        A run waiting here holds no worker slot; a timer is a server-side event."""

        def work() -> bool:
            return self._pending is not None or self._down is not None or self._history_too_long()

        timers = workflow.patched(DRIFT_AND_TTL)
        due = self._next_timer() if timers else None
        if due is None:
            return await workflow.wait_condition(work)
        wait = due - workflow.now()
        if wait <= timedelta(0):
            return
        with contextlib.suppress(TimeoutError):  # the timer fired: the caller sees what is due
            await workflow.wait_condition(work, timeout=wait, timeout_summary=self._timer_summary(due))

    def _next_timer(self) -> datetime | None:
        state = self._state
        deadlines = [state.expires_at] if state.expires_at is not None and not state.expired else []
        check = self._next_check()
        return min([*deadlines, check] if check else deadlines, default=None)

    def _timer_summary(self, due: datetime) -> str:
        if self._state.expires_at == due:
            return "time-to-live: tear down"
        return "next drift check"

    def _expired(self) -> bool:
        state = self._state
        return state.expires_at is not None and not state.expired and workflow.now() >= state.expires_at

    def _next_check(self) -> datetime | None:
        """A check `drift.check_every` after the last check or operation, while the spec is live."""
        state = self._state
        if state.spec is None or state.phase is not DeploymentPhase.READY:
            return None
        every = state.spec.drift.check_every
        if every <= timedelta(0):
            return None
        since = [t for t in (state.last.finished_at if state.last else None,) if t is not None]
        since += [state.drift.checked_at] if state.drift is not None else []
        return max(since, default=workflow.now()) + every

    def _check_due(self) -> bool:
        due = self._next_check()
        return due is not None and workflow.now() >= due

    def _idle_history_long(self) -> bool:
        return self._history_too_long() or workflow.info().get_current_history_length() > MAX_IDLE_EVENTS

    def _history_too_long(self) -> bool:
        """The server's suggestion, as a safety net: every operation already ends its run. A run that
        has only started has nothing to shed (a server threshold below that would loop)."""
        info = workflow.info()
        return info.is_continue_as_new_suggested() and info.get_current_history_length() > MIN_EVENTS_TO_SHED

    # Drift

    async def _check_drift(self, spec: DeploymentSpec) -> DriftReport:
        """Read-only: the report becomes the deployment's drift (status, UI, DeploymentDrift).

        Not before the last operation's resources are visible to every call (EC2 and ELBv2 are
        eventually consistent): a check right after a create would report them missing."""
        state = self._state
        last = state.last.finished_at if state.last is not None else None
        if last is not None:
            settled = last + timedelta(seconds=spec.timing.consistency_window_seconds)
            if settled > workflow.now():
                await workflow.sleep(settled - workflow.now(), summary="until AWS shows what was just made")
        report: DriftReport = await workflow.execute_activity_method(
            DriftActivities.check_drift,
            CheckInput(scope=self._scope(spec), spec=spec, outputs=state.outputs, timing=spec.timing),
            summary=f"Check {state.deployment_id} for drift (read-only)",
            **activity_options(spec.timing),
        )
        self._drift(report)
        return report

    async def _scheduled_check(self) -> None:
        """The timer's check; with `on_drift: repair` a drifted deployment is converged back."""
        spec = self._state.spec
        assert spec is not None
        report = await self._check_drift(spec)
        busy = self._pending is not None or self._down is not None
        if (
            report.drifted
            and spec.drift.on_drift is OnDrift.REPAIR
            and not busy
            and not self._failed_before(report)
        ):
            self._running_spec = spec
            self._operation = asyncio.create_task(self._repair(spec, report))
            await self._operation
            self._operation = self._running_spec = None

    async def _repair(self, spec: DeploymentSpec, report: DriftReport) -> None:
        """Undo in place what can be (tags, ingress rules, target registrations), then converge what
        is missing or replaced as a change does (zero downtime, rollback of its own launches if it
        fails), then check again: the result says what was found and what is left."""
        self._repairing = report.items
        self._started(Operation.REPAIR, None, DeploymentPhase.CONVERGING)
        try:
            fixed = await self._repair_in_place(
                spec, report, f"Repair {spec.deployment_id} in place: {len(report.items)} difference(s)"
            )
            untagged = sorted({i.id or i.name for i in fixed.left if i.field == f"tag:{DEPLOYMENT_TAG}"})
            if untagged:  # read by tags, they would look missing and get twins
                message = (
                    f"{', '.join(untagged)} lost the {DEPLOYMENT_TAG} tag: the workflow finds its "
                    "resources by it, and changes only what carries it. Put the tag back by hand (value "
                    f"{spec.deployment_id}); the next check repairs the rest"
                )
                return self._finish(Operation.REPAIR, Outcome.FAILED, message=message)
            await self._gone_for_good(spec, fixed.left)
            if fixed.left:  # a resource missing or to replace: what `up` does with the spec
                await self._apply(spec)
                last = self._state.last
                if last is not None and last.outcome not in (Outcome.COMPLETED, Outcome.UNCHANGED):
                    return  # its own result says what failed; the deployment is no worse than before
            after = await self._check_drift(spec)
            outcome = Outcome.FAILED if after.drifted else Outcome.COMPLETED
            message = f"repaired {len(report.items)} difference(s)" + (
                f"; still drifted: {after.summary()}" if after.drifted else ""
            )
            self._finish(Operation.REPAIR, outcome, message=message)
        except asyncio.CancelledError:
            if self._down is None:
                raise
            self._finish(Operation.REPAIR, Outcome.CANCELLED, message="stopped by `down`")
        except ActivityError as err:
            self._finish(
                Operation.REPAIR, Outcome.FAILED, message=f"repair in place failed: {root_message(err)}"
            )
        finally:
            self._repairing = None

    async def _repair_in_place(self, spec: DeploymentSpec, report: DriftReport, summary: str) -> RepairResult:
        """Tags, ingress rules and target registrations put back as `spec` has them."""
        return await workflow.execute_activity_method(
            DriftRepairActivities.repair_in_place,
            RepairInput(scope=self._scope(spec), spec=spec, report=report, timing=spec.timing),
            summary=summary,
            **activity_options(spec.timing),
        )

    async def _gone_for_good(self, spec: DeploymentSpec, left: list[DriftItem]) -> None:
        """A NAT gateway deleted outside the deployment holds its Elastic IP until AWS has finished
        deleting it: the create that makes it again waits for that, instead of failing on an
        address still associated."""
        deleting = waiting(spec.timing, spec.timing.delete_timeout_seconds)
        for item in left:
            if (
                item.kind is Kind.NAT_GATEWAY
                and item.drift is Drift.MISSING
                and item.field is None
                and item.id
            ):
                await workflow.execute_activity_method(
                    NetworkActivities.delete_nat_gateway,
                    DeleteInput(
                        key=ResourceKey(scope=self._scope(spec), name=item.name),
                        waiting=deleting,
                        ids=[item.id],
                    ),
                    summary=f"Wait until AWS has deleted {item.name} ({item.id}) and freed its address",
                    **activity_options(spec.timing, deleting),
                )

    def _failed_before(self, report: DriftReport) -> bool:
        """The last repair of this very drift failed: it is reported, not tried again at every check
        (each try would launch and roll back again); a changed drift or an `up` tries anew."""
        last = self._state.last
        failed = last is not None and last.operation is Operation.REPAIR and last.outcome is Outcome.FAILED
        return failed and last is not None and last.repaired == report.items

    def _drift(self, report: DriftReport) -> None:
        state, before = self._state, self._state.drift
        state.drift = report
        if (before is not None and before.drifted) != report.drifted and self._has(
            search_attributes.DEPLOYMENT_DRIFT
        ):
            workflow.upsert_search_attributes([search_attributes.DEPLOYMENT_DRIFT.value_set(report.drifted)])
        self._show()

    def _scope(self, spec: DeploymentSpec) -> Scope:
        return Scope(deployment_id=spec.deployment_id, region=self._state.region, tags=spec.tags)

    # Time-to-live

    def _set_deadline(self, spec: DeploymentSpec, applied_at: datetime) -> None:
        """A spec's `ttl` starts counting at the `up` that applied it; the same ttl again keeps the
        deadline (`extend` moves it), a spec without one leaves it as it is."""
        state = self._state
        if spec.ttl is None or (state.ttl == spec.ttl and state.expires_at is not None):
            return
        state.ttl, state.expires_at = spec.ttl, applied_at + spec.ttl
        self._deadline_changed()

    def _deadline_changed(self) -> None:
        if self._has(search_attributes.DEPLOYMENT_DRIFT):  # a namespace with the newer attributes
            workflow.upsert_search_attributes(
                [search_attributes.DEPLOYMENT_EXPIRES.value_set(self._state.expires_at)]
            )
        self._show()

    def _has(self, key: object) -> bool:
        return key in workflow.info().typed_search_attributes

    async def _apply(self, spec: DeploymentSpec) -> None:
        """One `up`: read what is live, then create, converge, or refuse; never raises for a failed
        operation (its own rollback has run), only when the workflow itself is cancelled."""
        try:
            await self._operate(spec)
        except asyncio.CancelledError:
            if self._down is None:
                raise
            self._finish(self._running or Operation.NONE, Outcome.CANCELLED, message="stopped by `down`")
        except ChildWorkflowError as err:
            cancelled = is_cancelled_exception(err)
            outcome = Outcome.CANCELLED if cancelled else Outcome.FAILED
            message = "cancelled" + (" by `down`" if self._down else "") if cancelled else child_message(err)
            if self._running is Operation.CREATE and not cancelled and not self._completing:
                self._state.spec = None  # rolled back (or kept for inspection): nothing in service
            self._finish(self._running or Operation.NONE, outcome, message=message)

    async def _operate(self, spec: DeploymentSpec) -> None:
        state = self._state
        if state.operations == 0 and state.adopted_from is None:
            return await self._create(spec)  # nothing of it ran before: find-or-create, as ever
        live = await self._inspect(spec)
        if not live.exists:
            return await self._create(spec)
        actions = diff(spec, live)
        refused = refusals(actions)
        # A rule or tag changed by hand makes a change look inapplicable: the spec wins, then compare.
        current = state.spec
        if (
            refused
            and current is not None
            and self._repairing is None
            and workflow.patched(UP_UNDOES_DRIFT)
            and await self._undo_drift(current)
        ):
            live = await self._inspect(spec)
            actions = diff(spec, live)
            refused = refusals(actions)
        if not refused and needs_create(actions):
            # An incomplete deployment (a create kept or interrupted): find-or-create completes it,
            # as long as no instance has to change too.
            refused = [a for a in actions if a.kind is Kind.INSTANCE and a.action is not Action.UNCHANGED]
            if not refused:
                return await self._create(spec, completing=state.spec is not None)
        if refused:
            shown = [
                a
                for a in actions
                if a in refused or (a.kind is not Kind.INSTANCE and a.action is not Action.UNCHANGED)
            ]
            listed = "; ".join(describe(action) for action in shown)
            message = (
                f"up cannot apply this change to the live deployment {spec.deployment_id}: {listed}. "
                "Nothing was changed; `starter.py plan` shows what differs."
            )
            return self._finish(Operation.NONE, Outcome.REFUSED, message=message, refused=refused)
        if all(a.action is Action.UNCHANGED for a in actions):
            self._state.spec = spec
            return self._finish(Operation.NONE, Outcome.UNCHANGED)
        await self._converge(spec, live)

    async def _undo_drift(self, current: DeploymentSpec) -> bool:
        """`up` declares the deployment: what was changed by hand (an ingress rule, a tag, a target)
        is put back as the current spec has it before the new spec is compared; True if anything was."""
        report = await self._check_drift(current)
        if not report.drifted:
            return False
        fixed = await self._repair_in_place(
            current, report, f"Put back what was changed by hand in {current.deployment_id} before this `up`"
        )
        if fixed.fixed:
            await self._check_drift(current)
        return bool(fixed.fixed)

    async def _inspect(self, spec: DeploymentSpec) -> LiveDeployment:
        """Where the deployment lives (a spec naming another region is refused by the diff)."""
        state = self._state
        known = state.spec is not None or state.adopted_from is not None
        scope = Scope(deployment_id=state.deployment_id, region=state.region if known else spec.region)
        return await workflow.execute_child_workflow(
            InspectWorkflow.run,
            InspectInput(scope=scope, timing=spec.timing),
            id=f"inspect-{state.deployment_id}-{self._number()}",
            static_summary=f"Read what {state.deployment_id} has live in {scope.region} (read-only)",
        )

    async def _create(self, spec: DeploymentSpec, *, completing: bool = False) -> None:
        """`completing`: the deployment is live and misses what the create makes (a NAT gateway
        deleted outside it). That run keeps what it made if it fails: its rollback would remove the
        whole deployment, found resources included, and a failure leaves it as it was."""
        self._started(Operation.CREATE, deploy_workflow_id(spec.deployment_id), DeploymentPhase.CREATING)
        self._state.region, self._completing = spec.region, completing
        outputs: DeploymentOutputs = await workflow.execute_child_workflow(
            DeployWorkflow.run,
            spec.model_copy(update={"on_failure": OnFailure.KEEP}) if completing else spec,
            id=deploy_workflow_id(spec.deployment_id),
            memo={"deployment_id": spec.deployment_id, "region": spec.region},
            search_attributes=self._attributes(Phase.PREFLIGHT.value),
            static_summary=f"Deploy {spec.deployment_id} to {spec.region}",
            static_details=describe_spec(spec),
        )
        self._state.spec, self._state.outputs = spec, outputs
        self._finish(Operation.CREATE, Outcome.COMPLETED)

    async def _converge(self, spec: DeploymentSpec, live: LiveDeployment) -> None:
        try:
            request = ConvergeInput.from_live(spec, live)
        except ValueError as err:
            return self._finish(Operation.NONE, Outcome.REFUSED, message=str(err))
        child = f"converge-{spec.deployment_id}-{self._number()}"
        self._started(Operation.CONVERGE, child, DeploymentPhase.CONVERGING)
        result: ConvergeResult = await workflow.execute_child_workflow(
            ConvergeWorkflow.run,
            request,
            id=child,
            static_summary=f"Converge {spec.deployment_id}: {spec.instances.count} x "
            f"{spec.instances.instance_type}",
        )
        outputs = self._state.outputs
        self._state.spec = spec
        self._state.outputs = with_fleet(outputs, result) if outputs else None
        self._finish(Operation.CONVERGE, Outcome.COMPLETED, converge=result)

    async def _teardown(self, request: DownRequest) -> None:
        state = self._state
        region = state.region if state.spec or state.last else (request.region or state.region)
        self._started(
            Operation.TEARDOWN, teardown_workflow_id(state.deployment_id), DeploymentPhase.TEARING_DOWN
        )
        try:
            result: TeardownResult = await workflow.execute_child_workflow(
                TeardownWorkflow.run,
                TeardownInput(
                    scope=Scope(deployment_id=state.deployment_id, region=region),
                    timing=request.timing or state.timing,
                ),
                id=teardown_workflow_id(state.deployment_id),
                static_summary=f"Tear down {state.deployment_id} in {region}",
            )
        except ChildWorkflowError as err:
            message = child_message(err) + (f" (started because {request.reason})" if request.reason else "")
            self._finish(Operation.TEARDOWN, Outcome.FAILED, message=message, phase=DeploymentPhase.FAILED)
            self._down_result = DownResult(
                deployment_id=state.deployment_id, outcome=Outcome.FAILED, message=message
            )
            self._down = None
            return
        state.spec, state.outputs = None, None
        self._finish(
            Operation.TEARDOWN, Outcome.COMPLETED, message=request.reason, phase=DeploymentPhase.DELETED
        )
        self._down_result = DownResult(
            deployment_id=state.deployment_id, outcome=Outcome.COMPLETED, teardown=result
        )

    # Bookkeeping

    def _number(self) -> int:
        return self._state.operations + 1

    def _started(self, operation: Operation, child_id: str | None, phase: DeploymentPhase) -> None:
        self._running, self._child_id = operation, child_id
        self._phase(phase)

    def _finish(
        self,
        operation: Operation,
        outcome: Outcome,
        *,
        message: str | None = None,
        converge: ConvergeResult | None = None,
        refused: list | None = None,
        phase: DeploymentPhase | None = None,
    ) -> None:
        state = self._state
        self._completing = False
        if self._repairing is not None and operation is not Operation.TEARDOWN:
            operation = Operation.REPAIR  # a converge or create run as part of a repair
        state.last = OperationResult(
            operation=operation,
            outcome=outcome,
            workflow_id=self._child_id,
            message=message,
            outputs=state.outputs,
            converge=converge,
            refused=refused or [],
            repaired=self._repairing or [],
            finished_at=workflow.now(),
        )
        state.operations += 1
        self._running = self._child_id = None
        if phase is None:
            phase = DeploymentPhase.READY if state.spec is not None else DeploymentPhase.FAILED
            if state.spec is None and outcome in (Outcome.REFUSED, Outcome.CANCELLED):
                phase = state.phase if state.phase is not DeploymentPhase.CREATING else DeploymentPhase.FAILED
        self._phase(phase)

    def _phase(self, phase: DeploymentPhase) -> None:
        self._state.phase = phase
        if search_attributes.DEPLOYMENT_PHASE in workflow.info().typed_search_attributes:
            workflow.upsert_search_attributes([search_attributes.DEPLOYMENT_PHASE.value_set(phase.value)])
        self._show()

    def _attributes(self, phase: str) -> TypedSearchAttributes | None:
        """For a child: the deployment's search attributes, when the namespace has them."""
        if search_attributes.DEPLOYMENT_ID not in workflow.info().typed_search_attributes:
            return None
        return TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.DEPLOYMENT_ID, self._state.deployment_id),
                SearchAttributePair(search_attributes.DEPLOYMENT_PHASE, phase),
            ]
        )

    def _show(self) -> None:
        """Markdown for the Temporal UI's 'current details' box."""
        state, last = self._state, self._state.last
        lines = [f"**{state.deployment_id}** in {state.region}: {state.phase.value}"]
        if state.spec is not None:
            lines.append(f"- spec: {describe_spec(state.spec)}")
        if self._running is not None:
            lines.append(f"- running: {self._running.value} (`{self._child_id}`)")
        if last is not None:
            lines.append(f"- last: {last.operation.value} {last.outcome.value}" + _suffix(last.message))
        if state.drift is not None:
            checked = f"{state.drift.checked_at:%Y-%m-%d %H:%M:%S} UTC"
            lines.append(f"- drift (checked {checked}): {state.drift.summary()}")
        if state.expires_at is not None:
            verb = "expired" if state.expired else "expires"
            lines.append(f"- {verb} {state.expires_at:%Y-%m-%d %H:%M:%S} UTC (time-to-live)")
        workflow.set_current_details("\n".join(lines))


def refusals(actions: list[ResourceAction]) -> list[ResourceAction]:
    """What neither a create nor the converge applies."""
    return [a for a in inapplicable(actions) if not completed_by_create(a, actions)]


def _suffix(message: str | None) -> str:
    return f": {message}" if message else ""


def describe_spec(spec: DeploymentSpec) -> str:
    return (
        f"Web tier: {spec.instances.count} x {spec.instances.instance_type} behind an ALB, "
        f"NAT mode {spec.nat_mode.value}, on failure {spec.on_failure.value}, private subnets "
        + ", ".join(f"{s.cidr} ({s.availability_zone})" for s in spec.private_subnets)
    )


def child_message(err: ChildWorkflowError) -> str:
    """The child's own one-paragraph account (failed step, AWS's words, what was rolled back)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type in (
        "DeploymentFailed",
        "ConvergeFailed",
        "TeardownIncomplete",
    ):
        return cause.message
    return root_message(err)
