"""Converge a live deployment's instances to a spec with zero downtime: scale out, scale in, and
rolling replacement with an additional batch, rolled back when a step fails for good.

The plan (models/converge.py) says which slots get new instances and which instances leave. New
instances are launched, registered and healthy behind the ALB before any old one is deregistered;
an old one is deregistered and drained (requests in flight finish) before it is terminated.
Termination is the one step no compensation can undo, so it is the last, once every new instance is
healthy and every old one drained: until then a rollback puts the old instances back in service
(registered and healthy) before it drains and terminates the new ones, and the deployment is back on
exactly its previous instances. The price: an old instance that a batch drained keeps running (out of
service) until the whole change has succeeded.

The spec's `on_failure`. `pause`, as for a create: the failed step waits in phase PAUSED for the
operator's `retry` (it runs again and the change goes on) or `rollback` (the change's compensations, as
an automatic rollback), the same updates as the create's (workflows/pause.py); nobody deciding within
`timing.pause_timeout_seconds` rolls back. `keep` rolls a change back like `rollback`: a half-changed
fleet (a new instance in no slot's service, an old one drained but running) is no deployment's spec, and
the next `up` would converge from a mess; the failed step and AWS's words are in the error and the
progress either way. Once termination has begun the change goes forward only: a failure there neither
pauses nor rolls back.

Input: the desired spec and the live facts InspectWorkflow reads (`ConvergeInput.from_live`); a
parent (the deployment's long-lived workflow) runs it as a child. Unlike a deployment it always waits
for health: zero downtime rests on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities import (
        ComputeActivities,
        LoadBalancingActivities,
        NetworkActivities,
        PreflightActivities,
        SecurityGroupActivities,
        TargetActivities,
    )
    from models import naming
    from models.converge import (
        RETIRE,
        SCALE_IN,
        SCALE_OUT,
        ConvergeInput,
        ConvergeResult,
        DrainInput,
        IngressChangeInput,
        Launch,
        ListenerActionInput,
        LiveInstance,
        SslPolicyInput,
        TargetGroupSettingsInput,
        converge_plan,
        drain_step,
        healthy_step,
        register_step,
        steps,
    )
    from models.nat_switch import NatSwitch, NewTable, RouteTableSwitchInput, move_step, retire_step, table_of
    from models.plan import PREFLIGHT, nat_zones
    from models.progress import DeploymentProgress, Phase
    from models.resources import (
        Deleted,
        DeleteInput,
        ElasticIp,
        Instance,
        InstanceInput,
        NatGatewayInput,
        PreflightInput,
        PreflightResult,
        RegisterTargetsInput,
        ResourceKey,
        RouteTableInput,
        Scope,
        TargetsHealthyInput,
        Waiting,
    )
    from workflows.graph import gather_settled
    from workflows.options import activity_options, waiting
    from workflows.pause import Pausable
    from workflows.progress import ProgressTracker
    from workflows.saga import Compensation, Saga, root_message, shielded

T = TypeVar("T")


@workflow.defn
class ConvergeWorkflow(Pausable):
    def __init__(self) -> None:
        super().__init__()
        self._irreversible = False

    @workflow.query
    def progress(self) -> DeploymentProgress:
        if self._tracker is None:
            raise ApplicationError("the converge has not started yet")
        return self._tracker.progress

    @workflow.run
    async def run(self, request: ConvergeInput) -> ConvergeResult:
        self._input, self._spec = request, request.spec
        self._scope = Scope(
            deployment_id=self._spec.deployment_id, region=self._spec.region, tags=self._spec.tags
        )
        self._plan = converge_plan(request)
        planned = steps(self._spec, self._plan)
        self._summaries = {step.key: step.summary for step in planned}
        self._tracker = ProgressTracker(self._spec.deployment_id, self._spec.region, planned)
        self._saga = Saga()
        try:
            result = await self._converge()
        except BaseException as err:
            if not self._irreversible:
                await shielded(self._roll_back(err))
            if is_cancelled_exception(err):
                raise
            raise self._failure(err) from err
        self._tracker.phase(Phase.COMPLETED)
        return result

    # The plan

    async def _converge(self) -> ConvergeResult:
        plan = self._plan
        fleet = {i.name: i.instance_id for i in plan.keep}
        if plan.changes_nothing:
            return ConvergeResult(instance_ids=fleet, launched=[], terminated=[])
        self._tracker.phase(Phase.CREATING)
        updated = await self._update_in_place()
        pre = await self._preflight() if plan.needs_preflight else None
        network = await self._switch_nat(pre, plan.nat) if plan.nat else {}
        await self._drain(SCALE_IN, plan.scale_in)
        launched = await self._add(pre, SCALE_OUT, plan.scale_out)
        for batch in plan.batches:
            launched |= await self._add(pre, batch.key, batch.launch)
            await self._drain(batch.key, batch.retire)
        terminated = await self._retire(plan.retiring)
        if plan.nat:
            await self._retire_network(plan.nat)
        fleet |= {name: instance.instance_id for name, instance in launched.items()}
        return ConvergeResult(
            instance_ids=dict(sorted(fleet.items())),
            launched=sorted(launched),
            terminated=terminated,
            updated=updated,
            **network,
        )

    # The NAT mode (models/nat_switch.py): new gateways and tables first, subnets moved, old ones last

    async def _switch_nat(self, pre: PreflightResult | None, switch: NatSwitch) -> dict[str, dict[str, str]]:
        """Until every subnet has moved, each still routes through its old table: egress never cut."""
        live = self._input.network
        assert live is not None
        timing = self._spec.timing

        async def gateway(az: str) -> tuple[str, str, str]:
            assert pre is not None  # preflight ran: it names the public subnets
            eip_name, nat_name = naming.elastic_ip(az), naming.nat_gateway(az)
            self._undo(eip_name, NetworkActivities.release_elastic_ip, self._delete(eip_name))
            eip: ElasticIp = await self._step(
                eip_name, NetworkActivities.allocate_elastic_ip, self._key(eip_name)
            )
            wait = waiting(timing, timing.nat_gateway_timeout_seconds)
            self._undo(nat_name, NetworkActivities.delete_nat_gateway, self._delete(nat_name))
            request = NatGatewayInput(
                key=self._key(nat_name),
                subnet_id=pre.public_subnet_ids[az],
                allocation_id=eip.allocation_id,
                waiting=wait,
            )
            nat = await self._step(nat_name, NetworkActivities.create_nat_gateway, request, waiting=wait)
            return az, eip.allocation_id, nat.id

        made = await gather_settled(*(gateway(az) for az in switch.create_nats)) if switch.create_nats else []
        nats = {**live.nat_gateways, **{az: nat for az, _, nat in made}}
        eips = {**live.elastic_ips, **{az: eip for az, eip, _ in made}}

        async def table(new: NewTable) -> tuple[str, str]:
            self._undo(new.name, NetworkActivities.delete_route_table, self._delete(new.name))
            request = RouteTableInput(
                key=self._key(new.name), vpc_id=live.vpc_id, nat_gateway_id=nats[new.nat_zone], subnet_ids=[]
            )
            created = await self._step(new.name, NetworkActivities.create_private_route_table, request)
            return new.name, created.id

        created = (
            await gather_settled(*(table(t) for t in switch.create_tables)) if switch.create_tables else []
        )
        tables = {**live.route_tables, **dict(created)}
        for move in switch.moves:
            step = move_step(move.availability_zone)
            subnet = self._input.private_subnet_ids[move.availability_zone]
            if move.from_table in tables:
                back = RouteTableSwitchInput(
                    key=self._key(step), subnet_id=subnet, route_table_id=tables[move.from_table]
                )
                self._undo(step, NetworkActivities.switch_route_table, back)
            request = RouteTableSwitchInput(
                key=self._key(step), subnet_id=subnet, route_table_id=tables[move.to_table]
            )
            await self._step(step, NetworkActivities.switch_route_table, request)
        kept = nat_zones(self._spec)
        return {
            "nat_gateway_ids": {az: nats[az] for az in kept},
            "elastic_ip_allocation_ids": {az: eips[az] for az in kept if az in eips},
            "route_table_ids": {az: tables[table_of(self._spec, az)] for az in self._spec.availability_zones},
        }

    async def _retire_network(self, switch: NatSwitch) -> None:
        """The old tables (serving no subnet now), then the gateways no table routes to, then their
        addresses: from here the change goes forward only."""
        live = self._input.network
        if live is None or not switch.retires:
            return
        self._irreversible = True
        deletions = [
            (name, NetworkActivities.delete_route_table, [live.route_tables[name]])
            for name in switch.delete_tables
        ]
        for az in switch.delete_nats:
            deletions.append(
                (naming.nat_gateway(az), NetworkActivities.delete_nat_gateway, [live.nat_gateways[az]])
            )
            address = live.elastic_ips.get(az)
            deletions.append(
                (naming.elastic_ip(az), NetworkActivities.release_elastic_ip, [address] if address else [])
            )
        for name, activity, ids in deletions:
            step = retire_step(name)
            request = self._delete(name).model_copy(update={"ids": ids})
            await self._tracked(
                step,
                lambda _again, a=activity, r=request, s=step: self._execute(
                    a, r, self._summaries[s], self._deleting()
                ),
            )

    def _delete(self, name: str) -> DeleteInput:
        return DeleteInput(key=self._key(name), waiting=self._deleting())

    async def _update_in_place(self) -> list[str]:
        """Who may reach the ALB, the health check, the deregistration delay, whether HTTP redirects
        to HTTPS and the TLS policy: before the instances change (a drain waits out the new delay),
        each undone by setting the values it found."""
        plan, updated = self._plan, []
        if plan.ingress is not None and self._input.alb_security_group_id is not None:
            step = naming.ALB_SECURITY_GROUP
            request = IngressChangeInput(
                key=self._key(step),
                group_id=self._input.alb_security_group_id,
                add=plan.ingress.add,
                remove=plan.ingress.remove,
            )
            self._undo(step, SecurityGroupActivities.change_ingress, request.reversed())
            await self._step(step, SecurityGroupActivities.change_ingress, request)
            updated.append(step)
        if plan.target_group is not None:
            step = naming.TARGET_GROUP
            group = self._input.target_group_arn
            before, after = (
                TargetGroupSettingsInput(key=self._key(step), target_group_arn=group, settings=settings)
                for settings in (plan.target_group.before, plan.target_group.after)
            )
            self._undo(step, TargetActivities.configure_target_group, before)
            await self._step(step, TargetActivities.configure_target_group, after)
            updated.append(step)
        if plan.listener is not None:
            step = naming.listener(self._input.spec.load_balancer.listener_port)
            before, after = (
                ListenerActionInput(
                    key=self._key(step),
                    listener_arn=plan.listener.arn,
                    target_group_arn=self._input.target_group_arn,
                    redirect_to_port=port,
                )
                for port in (plan.listener.before, plan.listener.after)
            )
            self._undo(step, TargetActivities.set_listener_action, before)
            await self._step(step, TargetActivities.set_listener_action, after)
            updated.append(step)
        if plan.ssl_policy is not None and self._input.spec.https is not None:
            step = naming.listener(self._input.spec.https.port)
            before, after = (
                SslPolicyInput(key=self._key(step), listener_arn=plan.ssl_policy.arn, ssl_policy=policy)
                for policy in (plan.ssl_policy.before, plan.ssl_policy.after)
            )
            self._undo(step, TargetActivities.set_ssl_policy, before)
            await self._step(step, TargetActivities.set_ssl_policy, after)
            updated.append(step)
        return updated

    async def _preflight(self) -> PreflightResult:
        """Only before launches: the AMI (the spec's, or its parameter's today) and the instance type
        offered in every AZ, checked before anything changes."""
        return await self._step(PREFLIGHT, PreflightActivities.preflight, PreflightInput(spec=self._spec))

    async def _add(
        self, pre: PreflightResult | None, phase: str, launches: list[Launch]
    ) -> dict[str, Instance]:
        """Launch, register, healthy: only then may old instances leave."""
        if not launches or pre is None:
            return {}
        launched = dict(await gather_settled(*(self._launch(pre, launch) for launch in launches)))
        ids = [instance.instance_id for instance in launched.values()]
        group, port = self._input.target_group_arn, self._spec.app.port
        step = register_step(phase)
        self._undo(
            step,
            TargetActivities.drain_targets,
            DrainInput(
                key=self._key(step), waiting=self._deleting(), ids=ids, target_group_arn=group, port=port
            ),
        )
        request = RegisterTargetsInput(
            key=self._key(step), target_group_arn=group, instance_ids=ids, port=port
        )
        await self._step(step, LoadBalancingActivities.register_targets, request)
        step = healthy_step(phase)
        await self._step(
            step,
            LoadBalancingActivities.wait_targets_healthy,
            self._health(step, ids),
            waiting=self._healthy(),
        )
        return launched

    async def _launch(self, pre: PreflightResult, launch: Launch) -> tuple[str, Instance]:
        self._undo(
            launch.name,
            ComputeActivities.terminate_instance,
            DeleteInput(key=self._key(launch.name), waiting=self._deleting()),
        )
        instances, wait = (
            self._spec.instances,
            waiting(self._spec.timing, self._spec.timing.instance_timeout_seconds),
        )
        request = InstanceInput(
            key=self._key(launch.name),
            subnet_id=self._input.private_subnet_ids[launch.availability_zone],
            security_group_id=self._input.app_security_group_id,
            ami_id=pre.ami_id,
            root_device_name=pre.root_device_name,
            instance_type=instances.instance_type,
            root_volume_gib=instances.root_volume_gib,
            app_port=self._spec.app.port,
            app_version=self._spec.app.version,
            waiting=wait,
        )
        return launch.name, await self._step(
            launch.name, ComputeActivities.launch_instance, request, waiting=wait
        )

    async def _drain(self, phase: str, leaving: list[LiveInstance]) -> None:
        """Deregister exactly these instances and wait out the draining; undone by putting them back."""
        if not leaving:
            return
        step, ids = drain_step(phase), [i.instance_id for i in leaving]
        self._undo(step, TargetActivities.reinstate_targets, self._health(step, ids))
        request = DrainInput(
            key=self._key(step),
            waiting=self._deleting(),
            ids=ids,
            target_group_arn=self._input.target_group_arn,
            port=self._spec.app.port,
        )
        await self._step(step, TargetActivities.drain_targets, request, waiting=self._deleting())

    async def _retire(self, leaving: list[LiveInstance]) -> list[str]:
        """Terminate the drained instances: from here the change goes forward only."""
        if not leaving:
            return []
        self._irreversible = True

        async def terminate(instance: LiveInstance) -> Deleted:
            request = DeleteInput(
                key=self._key(instance.name), waiting=self._deleting(), ids=[instance.instance_id]
            )
            return await self._execute(
                ComputeActivities.terminate_instance, request, f"Terminate {instance.name}", self._deleting()
            )

        ids = [i.instance_id for i in leaving]
        await self._tracked(
            RETIRE, lambda _again: gather_settled(*(terminate(i) for i in leaving)), lambda _: ",".join(ids)
        )
        return ids

    # Steps and compensations

    def _key(self, name: str) -> ResourceKey:
        """Never `known_new`: the deployment exists, and a converge run again must find its launches."""
        return ResourceKey(scope=self._scope, name=name)

    def _deleting(self) -> Waiting:
        return waiting(self._spec.timing, self._spec.timing.delete_timeout_seconds)

    def _healthy(self) -> Waiting:
        return waiting(self._spec.timing, self._spec.timing.targets_healthy_timeout_seconds)

    def _health(self, step: str, ids: list[str]) -> TargetsHealthyInput:
        return TargetsHealthyInput(
            key=self._key(step),
            target_group_arn=self._input.target_group_arn,
            instance_ids=ids,
            port=self._spec.app.port,
            waiting=self._healthy(),
        )

    def _undo(self, step: str, activity: Callable[..., Any], request: Any) -> None:
        """Registered before the step it undoes, so a step whose reply was lost is undone too."""
        self._saga.register(
            Compensation(
                step=step, summary=f"Undo: {self._summaries[step]}", activity=activity, request=request
            )
        )

    async def _step(
        self,
        step: str,
        activity: Callable[..., Awaitable[T]],
        request: Any,
        *,
        waiting: Waiting | None = None,
    ) -> T:
        # Never `known_new` (`_key`): a run again after a pause finds what its failed run made.
        return await self._tracked(
            step, lambda _again: self._execute(activity, request, self._summaries[step], waiting)
        )

    async def _execute(
        self,
        activity: Callable[..., Awaitable[T]],
        request: Any,
        summary: str,
        wait: Waiting | None,
        *,
        compensation: bool = False,
    ) -> T:
        return await workflow.execute_activity_method(
            activity,
            request,
            summary=summary,
            **activity_options(self._spec.timing, wait, compensation=compensation),
        )

    def _pauses(self) -> bool:
        """Only while the change can still be undone: a pause offers the rollback it replaces."""
        return super()._pauses() and not self._irreversible

    async def _roll_back(self, cause: BaseException) -> None:
        tracker = self._tracker
        assert tracker is not None
        cancelled = is_cancelled_exception(cause)
        tracker.progress.error = None if cancelled else root_message(cause)
        tracker.phase(Phase.ROLLING_BACK)

        async def compensate(compensation: Compensation) -> None:
            tracker.compensating(compensation.step)
            request = self._known(compensation)
            await self._execute(
                compensation.activity,
                request,
                compensation.summary,
                getattr(request, "waiting", None),
                compensation=True,
            )
            tracker.compensated(
                compensation.step, failed_before=compensation.step == tracker.progress.failed_step
            )

        for compensation, why in await self._saga.unwind(compensate):
            tracker.left_behind(compensation.step, why)
        tracker.phase(Phase.CANCELLED if cancelled else Phase.FAILED)

    def _known(self, compensation: Compensation) -> Any:
        """A delete's request with what the run knows: a launch's instance id, and until when AWS may
        not show what its step made everywhere (the step's end plus the consistency window)."""
        request = compensation.request
        step = self._tracker.step(compensation.step)
        if isinstance(request, IngressChangeInput):  # revokes the rules its step authorized
            window = timedelta(seconds=self._spec.timing.consistency_window_seconds)
            return request.model_copy(update={"settled_after": (step.finished_at or workflow.now()) + window})
        if not isinstance(request, DeleteInput):
            return request
        ids = request.ids or (step.resource_id.split(",") if step.resource_id else [])
        ended = step.finished_at or workflow.now()
        window = timedelta(seconds=self._spec.timing.consistency_window_seconds)
        return request.model_copy(update={"ids": ids, "settled_after": ended + window})

    def _failure(self, err: BaseException) -> ApplicationError:
        progress = self._tracker.progress
        step = progress.failed_step or "unknown step"
        summary = self._summaries.get(step, step)
        message = f"converging {self._spec.deployment_id}: step '{step}' ({summary}) failed: "
        message += root_message(err)
        if self._rollback_requested:
            message += f" ({self._rollback_requested})"
        if self._irreversible:
            message += (
                "; the change was in service (every new instance healthy, every old one drained, every "
                "private subnet on its new route table): the deployment runs the new spec, and a converge "
                "run again removes what is left of the old instances, route tables and NAT gateways"
            )
        elif progress.left_behind:
            message += "; rollback could not undo: " + "; ".join(progress.left_behind)
        else:
            before = ", ".join(sorted(i.name for i in self._input.instances)) or "none"
            message += f"; rolled back: the deployment is back on its previous spec (instances {before})"
        return ApplicationError(message, type="ConvergeFailed", non_retryable=True)
