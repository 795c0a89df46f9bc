"""The deployment workflow: the tutorial's web tier as a DAG of idempotent steps, rolled back on failure.

Branches that do not depend on each other run concurrently (the NAT chain, the ALB chain, security
groups and target group). Instances launch as soon as their subnets and security group exist, while
the NAT gateway may still be pending: their user data retries its Node.js install until the NAT route
gives egress, so the app's boot (and the health wait) needs the route, the launch does not. Every
create registers its compensation first; on any failure or on cancellation the siblings are stopped,
the compensations run newest first, and the run ends FAILED or CANCELLED with the original cause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities import (
        CertificateActivities,
        ComputeActivities,
        DnsActivities,
        LoadBalancingActivities,
        NetworkActivities,
        PreflightActivities,
        SecurityGroupActivities,
    )
    from models import naming
    from models.plan import (
        CERTIFICATE_ISSUED,
        HEALTHY,
        PREFLIGHT,
        TARGETS,
        instance_zones,
        nat_zones,
        plan,
        route_table_zones,
    )
    from models.progress import DeploymentProgress, Phase, StepState
    from models.resources import (
        Certificate,
        CertificateInput,
        CertificateIssuedInput,
        DeleteInput,
        DeploymentOutputs,
        DnsRecord,
        ElasticIp,
        IngressRule,
        Instance,
        InstanceInput,
        Kind,
        ListenerInput,
        LoadBalancer,
        LoadBalancerInput,
        NatGatewayInput,
        PreflightInput,
        PreflightResult,
        RecordInput,
        RegisterTargetsInput,
        Resource,
        ResourceKey,
        RouteTableInput,
        Scope,
        SecurityGroupInput,
        SubnetInput,
        TargetGroupInput,
        TargetGroupSettings,
        TargetsHealthyInput,
        looking_again,
    )
    from models.spec import DeploymentSpec, OnFailure
    from workflows.graph import TaskGraph, gather_settled
    from workflows.options import activity_options, waiting
    from workflows.pause import Pausable
    from workflows.progress import ProgressTracker
    from workflows.saga import Compensation, Saga, root_message, shielded

T = TypeVar("T")

INSTANCES_BEFORE_ROUTE = "instances-launch-before-nat-route"
"""Patch id: runs started before this change launched the instances after the NAT route; their
histories replay with that order (`workflow.patched` is False for them)."""

COMPENSATIONS: dict[Kind, Callable[..., Any]] = {
    Kind.SUBNET: NetworkActivities.delete_subnet,
    Kind.ELASTIC_IP: NetworkActivities.release_elastic_ip,
    Kind.NAT_GATEWAY: NetworkActivities.delete_nat_gateway,
    Kind.ROUTE_TABLE: NetworkActivities.delete_route_table,
    Kind.SECURITY_GROUP: SecurityGroupActivities.delete_security_group,
    Kind.TARGET_GROUP: LoadBalancingActivities.delete_target_group,
    Kind.LOAD_BALANCER: LoadBalancingActivities.delete_load_balancer,
    Kind.LISTENER: LoadBalancingActivities.delete_listener,
    Kind.INSTANCE: ComputeActivities.terminate_instance,
    Kind.TARGET_REGISTRATION: LoadBalancingActivities.deregister_targets,
    Kind.CERTIFICATE: CertificateActivities.delete_certificate,
    Kind.DNS_RECORD: DnsActivities.delete_record,
}
"""The delete activity of each kind: rollback and teardown share them."""


def workflow_id(deployment_id: str) -> str:
    return f"deploy-{deployment_id}"


@workflow.defn
class DeployWorkflow(Pausable):
    def __init__(self) -> None:
        super().__init__()
        self._nothing_existed = False

    @workflow.query
    def progress(self) -> DeploymentProgress:
        if self._tracker is None:
            raise ApplicationError("the deployment has not started yet")
        return self._tracker.progress

    @workflow.run
    async def run(self, spec: DeploymentSpec) -> DeploymentOutputs:
        self._spec = spec
        self._scope = Scope(deployment_id=spec.deployment_id, region=spec.region, tags=spec.tags)
        steps = plan(spec)
        self._plan = {step.key: step for step in steps}
        self._tracker = ProgressTracker(spec.deployment_id, spec.region, steps)
        self._saga = Saga()
        try:
            outputs = await self._deploy()
        except BaseException as err:
            if spec.on_failure is OnFailure.KEEP and not is_cancelled_exception(err):
                self._tracker.kept(err)
                raise self._failure(err) from err
            await shielded(self._roll_back(err))
            if is_cancelled_exception(err):
                raise
            raise self._failure(err) from err
        self._tracker.completed(outputs)
        return outputs

    # The graph

    async def _deploy(self) -> DeploymentOutputs:
        spec = self._spec
        pre: PreflightResult = await self._step(
            PREFLIGHT, PreflightActivities.preflight, PreflightInput(spec=spec)
        )
        # A reset run replays this preflight's answer while what the run before it made exists: only
        # the first run of the chain may trust it.
        info = workflow.info()
        self._nothing_existed = pre.existing == [] and info.run_id == info.first_execution_run_id
        self._tracker.phase(Phase.CREATING)
        graph = TaskGraph()
        subnets = graph.add(self._private_subnets(pre))
        nats = graph.add(self._nat_gateways(pre))
        routes = graph.add(self._route_tables(pre, subnets, nats))
        alb_sg = graph.add(self._alb_security_group(pre))
        app_sg = graph.add(self._app_security_group(pre, alb_sg))
        target_group = graph.add(self._target_group(pre))
        balancer = graph.add(self._load_balancer(pre, alb_sg))
        instances = graph.add(self._instances(pre, subnets, app_sg, routes))
        registered = graph.add(self._register(instances, target_group))
        listener = graph.add(self._listener(balancer, target_group))
        https = None
        if spec.https is not None:  # no such steps without it: earlier histories replay as they ran
            certificate = graph.add(self._certificate(pre))
            https_listener = graph.add(self._https_listener(pre, balancer, target_group, certificate))
            graph.add(self._alias_record(pre, balancer, https_listener))
            https = (certificate, https_listener)
        graph.add(self._healthy(instances, target_group, registered, listener, routes))
        await graph.run()
        return self._outputs(
            pre, subnets, nats, routes, alb_sg, app_sg, target_group, balancer, listener, instances, https
        )

    def _outputs(
        self,
        pre: PreflightResult,
        subnets: asyncio.Task[dict[str, str]],
        nats: asyncio.Task[tuple[dict[str, ElasticIp], dict[str, str]]],
        routes: asyncio.Task[dict[str, str]],
        alb_sg: asyncio.Task[str],
        app_sg: asyncio.Task[str],
        target_group: asyncio.Task[str],
        balancer: asyncio.Task[LoadBalancer],
        listener: asyncio.Task[str],
        instances: asyncio.Task[dict[str, Instance]],
        https: tuple[asyncio.Task[str], asyncio.Task[str]] | None = None,
    ) -> DeploymentOutputs:
        """The finished steps' results as the documented outputs (models/resources.py)."""
        spec = self._spec
        eips, nat_ids = nats.result()
        lb = balancer.result()
        port = spec.load_balancer.listener_port
        url = f"http://{lb.dns_name}" + ("" if port == 80 else f":{port}")
        if spec.https is not None:
            url = f"https://{spec.https.domain}" + ("" if spec.https.port == 443 else f":{spec.https.port}")
        return DeploymentOutputs(
            deployment_id=spec.deployment_id,
            region=spec.region,
            alb_dns_name=lb.dns_name,
            url=url,
            vpc_id=pre.vpc_id,
            ami_id=pre.ami_id,
            private_subnet_ids=subnets.result(),
            public_subnet_ids=pre.public_subnet_ids,
            elastic_ip_allocation_ids={az: e.allocation_id for az, e in eips.items()},
            nat_gateway_ids=nat_ids,
            route_table_ids=routes.result(),
            alb_security_group_id=alb_sg.result(),
            app_security_group_id=app_sg.result(),
            target_group_arn=target_group.result(),
            load_balancer_arn=lb.arn,
            listener_arn=listener.result(),
            instance_ids={name: i.instance_id for name, i in instances.result().items()},
            domain=spec.https.domain if spec.https else None,
            certificate_arn=https[0].result() if https else None,
            https_listener_arn=https[1].result() if https else None,
            resources=self._tracker.created_resources(),
        )

    async def _private_subnets(self, pre: PreflightResult) -> dict[str, str]:
        async def one(cidr: str, az: str) -> tuple[str, str]:
            name = naming.private_subnet(az)
            key = self._key(name)
            request = SubnetInput(key=key, vpc_id=pre.vpc_id, cidr=cidr, availability_zone=az)
            created: Resource = await self._create(name, NetworkActivities.create_private_subnet, request)
            return az, created.id

        pairs = await gather_settled(
            *(one(str(s.cidr), s.availability_zone) for s in self._spec.private_subnets)
        )
        return dict(pairs)

    async def _nat_gateways(self, pre: PreflightResult) -> tuple[dict[str, ElasticIp], dict[str, str]]:
        timing = self._spec.timing

        async def one(az: str) -> tuple[str, ElasticIp, str]:
            eip_name = naming.elastic_ip(az)
            eip: ElasticIp = await self._create(
                eip_name, NetworkActivities.allocate_elastic_ip, self._key(eip_name)
            )
            nat_name = naming.nat_gateway(az)
            wait = waiting(timing, timing.nat_gateway_timeout_seconds)
            request = NatGatewayInput(
                key=self._key(nat_name),
                subnet_id=pre.public_subnet_ids[az],
                allocation_id=eip.allocation_id,
                waiting=wait,
            )
            nat: Resource = await self._create(
                nat_name, NetworkActivities.create_nat_gateway, request, waiting=wait
            )
            return az, eip, nat.id

        results = await gather_settled(*(one(az) for az in nat_zones(self._spec)))
        return {az: eip for az, eip, _ in results}, {az: nat for az, _, nat in results}

    async def _route_tables(
        self,
        pre: PreflightResult,
        subnets: asyncio.Task[dict[str, str]],
        nats: asyncio.Task[tuple[dict[str, ElasticIp], dict[str, str]]],
    ) -> dict[str, str]:
        """Each private subnet's AZ -> the route table it uses (with one NAT gateway, one table for all)."""
        subnet_ids = await subnets
        _, nat_ids = await nats
        first_nat = next(iter(nat_ids.values()))

        async def one(az: str | None) -> dict[str, str]:
            name = naming.route_table(az)
            request = RouteTableInput(
                key=self._key(name),
                vpc_id=pre.vpc_id,
                nat_gateway_id=first_nat if az is None else nat_ids[az],
                subnet_ids=list(subnet_ids.values()) if az is None else [subnet_ids[az]],
            )
            created: Resource = await self._create(
                name, NetworkActivities.create_private_route_table, request
            )
            return {zone: created.id for zone in (subnet_ids if az is None else [az])}

        tables = await gather_settled(*(one(az) for az in route_table_zones(self._spec)))
        return {zone: table_id for served in tables for zone, table_id in served.items()}

    async def _alb_security_group(self, pre: PreflightResult) -> str:
        lb, https = self._spec.load_balancer, self._spec.https
        rules = [IngressRule(port=lb.listener_port, cidr=str(lb.allowed_cidr), description=naming.HTTP_RULE)]
        if https is not None:
            rules.append(
                IngressRule(port=https.port, cidr=str(lb.allowed_cidr), description=naming.HTTPS_RULE)
            )
        return await self._security_group(
            naming.ALB_SECURITY_GROUP, pre, "Load balancer: HTTP from the allowed range", *rules
        )

    async def _app_security_group(self, pre: PreflightResult, alb_sg: asyncio.Task[str]) -> str:
        rule = IngressRule(
            port=self._spec.app.port,
            source_security_group_id=await alb_sg,
            description=naming.APP_RULE,
        )
        return await self._security_group(
            naming.APP_SECURITY_GROUP, pre, "App instances: app port from the ALB only", rule
        )

    async def _security_group(
        self, name: str, pre: PreflightResult, description: str, *rules: IngressRule
    ) -> str:
        request = SecurityGroupInput(
            key=self._key(name), vpc_id=pre.vpc_id, description=description, ingress=list(rules)
        )
        created: Resource = await self._create(name, SecurityGroupActivities.create_security_group, request)
        return created.id

    async def _target_group(self, pre: PreflightResult) -> str:
        name = naming.TARGET_GROUP
        request = TargetGroupInput(
            key=self._key(name),
            vpc_id=pre.vpc_id,
            port=self._spec.app.port,
            health_check_path=self._spec.app.health_check_path,
            settings=TargetGroupSettings.of(self._spec),
        )
        created: Resource = await self._create(name, LoadBalancingActivities.create_target_group, request)
        return created.id

    async def _load_balancer(self, pre: PreflightResult, alb_sg: asyncio.Task[str]) -> LoadBalancer:
        timing = self._spec.timing
        name = naming.LOAD_BALANCER
        wait = waiting(timing, timing.load_balancer_timeout_seconds)
        request = LoadBalancerInput(
            key=self._key(name),
            subnet_ids=[pre.public_subnet_ids[az] for az in self._spec.availability_zones],
            security_group_id=await alb_sg,
            waiting=wait,
        )
        return await self._create(name, LoadBalancingActivities.create_load_balancer, request, waiting=wait)

    async def _instances(
        self,
        pre: PreflightResult,
        subnets: asyncio.Task[dict[str, str]],
        app_sg: asyncio.Task[str],
        routes: asyncio.Task[dict[str, str]],
    ) -> dict[str, Instance]:
        """Once their subnets and security group exist; the NAT route may not exist yet.

        Nothing in RunInstances needs the route: only the user data's Node.js install does, and it
        retries until the route gives egress (activities/user_data.py). The compensation is registered
        after those of the subnets and the app security group, which must outlive the instances; the
        route table and the NAT gateway do not depend on them, so unwinding those first is harmless.
        """
        subnet_ids, group_id = await subnets, await app_sg
        if not workflow.patched(INSTANCES_BEFORE_ROUTE):
            await routes
        timing, instances = self._spec.timing, self._spec.instances
        wait = waiting(timing, timing.instance_timeout_seconds)

        async def one(index: int, az: str) -> tuple[str, Instance]:
            name = naming.instance(index)
            request = InstanceInput(
                key=self._key(name),
                subnet_id=subnet_ids[az],
                security_group_id=group_id,
                ami_id=pre.ami_id,
                root_device_name=pre.root_device_name,
                instance_type=instances.instance_type,
                root_volume_gib=instances.root_volume_gib,
                app_port=self._spec.app.port,
                app_version=self._spec.app.version,
                waiting=wait,
            )
            created: Instance = await self._create(
                name, ComputeActivities.launch_instance, request, waiting=wait
            )
            return name, created

        pairs = await gather_settled(*(one(i, az) for i, az in enumerate(instance_zones(self._spec))))
        return dict(pairs)

    async def _register(
        self, instances: asyncio.Task[dict[str, Instance]], target_group: asyncio.Task[str]
    ) -> str:
        launched, group_arn = await instances, await target_group
        request = RegisterTargetsInput(
            key=self._key(TARGETS),
            target_group_arn=group_arn,
            instance_ids=[i.instance_id for i in launched.values()],
            port=self._spec.app.port,
        )
        created: Resource = await self._create(TARGETS, LoadBalancingActivities.register_targets, request)
        return created.id

    async def _listener(self, balancer: asyncio.Task[LoadBalancer], target_group: asyncio.Task[str]) -> str:
        lb, group_arn = await balancer, await target_group
        port = self._spec.load_balancer.listener_port
        name = naming.listener(port)
        request = ListenerInput(
            key=self._key(name),
            load_balancer_arn=lb.arn,
            target_group_arn=group_arn,
            port=port,
            redirect_to_port=self._spec.http_redirect_port,
        )
        created: Resource = await self._create(name, LoadBalancingActivities.create_listener, request)
        return created.id

    # HTTPS (only with the spec's `https` section)

    async def _certificate(self, pre: PreflightResult) -> str:
        """The certificate's ARN once it is issued: the spec's own, or one requested and validated."""
        https = self._spec.https
        assert https is not None and pre.hosted_zone_id is not None
        if https.certificate_arn is not None:
            return https.certificate_arn
        request = CertificateInput(
            key=self._key(naming.CERTIFICATE), domain=https.domain, hosted_zone_id=pre.hosted_zone_id
        )
        certificate: Certificate = await self._create(
            naming.CERTIFICATE, CertificateActivities.request_certificate, request
        )
        record = certificate.validation
        await self._create(
            naming.VALIDATION_RECORD,
            DnsActivities.create_record,
            RecordInput(key=self._key(naming.VALIDATION_RECORD), record=record),
            known_ids=[record.id],
        )
        timing = self._spec.timing
        wait = waiting(timing, timing.certificate_timeout_seconds)
        issued = CertificateIssuedInput(
            key=self._key(naming.CERTIFICATE), certificate_arn=certificate.arn, waiting=wait
        )
        await self._step(
            CERTIFICATE_ISSUED, CertificateActivities.wait_certificate_issued, issued, waiting=wait
        )
        return certificate.arn

    async def _https_listener(
        self,
        pre: PreflightResult,
        balancer: asyncio.Task[LoadBalancer],
        target_group: asyncio.Task[str],
        certificate: asyncio.Task[str],
    ) -> str:
        https = self._spec.https
        assert https is not None
        lb, group_arn, certificate_arn = await balancer, await target_group, await certificate
        name = naming.listener(https.port)
        request = ListenerInput(
            key=self._key(name),
            load_balancer_arn=lb.arn,
            target_group_arn=group_arn,
            port=https.port,
            certificate_arn=certificate_arn,
            ssl_policy=https.ssl_policy,
            tags={naming.ALIAS_TAG: f"{pre.hosted_zone_id}/{https.domain}"},
        )
        created: Resource = await self._create(name, LoadBalancingActivities.create_listener, request)
        return created.id

    async def _alias_record(
        self, pre: PreflightResult, balancer: asyncio.Task[LoadBalancer], https_listener: asyncio.Task[str]
    ) -> None:
        """Published once the name answers over HTTPS: the alias waits for the HTTPS listener."""
        https = self._spec.https
        assert https is not None and pre.hosted_zone_id is not None
        lb = await balancer
        await https_listener
        record = DnsRecord(zone_id=pre.hosted_zone_id, name=f"{https.domain}.", type="A", value=lb.dns_name)
        request = RecordInput(
            key=self._key(naming.ALIAS_RECORD), record=record, alias_zone_id=lb.canonical_hosted_zone_id
        )
        await self._create(naming.ALIAS_RECORD, DnsActivities.create_record, request, known_ids=[record.id])

    async def _healthy(
        self,
        instances: asyncio.Task[dict[str, Instance]],
        target_group: asyncio.Task[str],
        registered: asyncio.Task[str],
        listener: asyncio.Task[str],
        routes: asyncio.Task[dict[str, str]],
    ) -> None:
        """The app listens only after its install got egress: its wait starts once the route exists."""
        launched, group_arn = await instances, await target_group
        await registered
        await listener
        await routes
        if not self._spec.wait_for_healthy_targets:
            return
        timing = self._spec.timing
        wait = waiting(timing, timing.targets_healthy_timeout_seconds)
        request = TargetsHealthyInput(
            key=self._key(HEALTHY),
            target_group_arn=group_arn,
            instance_ids=[i.instance_id for i in launched.values()],
            port=self._spec.app.port,
            waiting=wait,
        )
        await self._step(HEALTHY, LoadBalancingActivities.wait_targets_healthy, request, waiting=wait)

    # Steps and compensations

    def _key(self, name: str) -> ResourceKey:
        """A create's key: known to be new while nothing of the deployment existed at preflight."""
        return ResourceKey(scope=self._scope, name=name, known_new=self._nothing_existed)

    async def _create(
        self,
        step: str,
        activity: Callable[..., Any],
        request: Any,
        *,
        known_ids: list[str] | None = None,
        **kw: Any,
    ) -> Any:
        """A forward step whose compensation is registered before it starts.

        `known_ids`: what the resource's id will be, known before the step (a DNS record's identity):
        the compensation deletes it even if the step's reply is lost."""
        kind = self._plan[step].kind
        assert kind is not None
        timing = self._spec.timing
        self._saga.register(
            Compensation(
                step=step,
                summary=f"Undo: {self._plan[step].summary}",
                activity=COMPENSATIONS[kind],
                request=DeleteInput(
                    key=ResourceKey(scope=self._scope, name=step),
                    waiting=waiting(timing, timing.delete_timeout_seconds),
                    ids=known_ids or [],
                ),
            )
        )
        return await self._step(step, activity, request, **kw)

    async def _step(self, step: str, activity: Callable[..., T], request: Any, *, waiting: Any = None) -> Any:
        """A step; run again after a pause, it looks for what its failed run may have made."""
        return await self._tracked(
            step,
            lambda again: workflow.execute_activity_method(
                activity,
                looking_again(request) if again else request,
                summary=self._plan[step].summary,
                **activity_options(self._spec.timing, waiting),
            ),
        )

    async def _roll_back(self, cause: BaseException) -> None:
        tracker = self._tracker
        cancelled = is_cancelled_exception(cause)
        tracker.progress.error = None if cancelled else root_message(cause)
        tracker.phase(Phase.ROLLING_BACK)

        async def compensate(compensation: Compensation) -> None:
            failed_before = tracker.step(compensation.step).state is StepState.FAILED
            tracker.compensating(compensation.step)
            await workflow.execute_activity_method(
                compensation.activity,
                self._known(compensation),
                summary=compensation.summary,
                **activity_options(self._spec.timing, compensation.request.waiting, compensation=True),
            )
            tracker.compensated(compensation.step, failed_before=failed_before)

        for compensation, why in await self._saga.unwind(compensate):
            tracker.left_behind(compensation.step, why)
        tracker.phase(Phase.CANCELLED if cancelled else Phase.FAILED)

    def _known(self, compensation: Compensation) -> DeleteInput:
        """The compensation's request with what the run knows: the id its step returned (deleted by
        id, even while a tag lookup cannot see it yet), and until when AWS may not show the resource
        everywhere (its step's end plus the consistency window): until then, "not found" is no proof
        that it is gone."""
        step = self._tracker.step(compensation.step)
        ended = step.finished_at or workflow.now()
        window = timedelta(seconds=self._spec.timing.consistency_window_seconds)
        return compensation.request.model_copy(
            update={
                "ids": list(
                    dict.fromkeys(
                        [
                            *compensation.request.ids,
                            *(step.resource_id.split(",") if step.resource_id else []),
                        ]
                    )
                ),
                "settled_after": ended + window,
            }
        )

    def _failure(self, err: BaseException) -> ApplicationError:
        progress = self._tracker.progress
        step = progress.failed_step or "unknown step"
        summary = self._plan[step].summary if step in self._plan else step
        message = f"step '{step}' ({summary}) failed: {root_message(err)}"
        if self._rollback_requested:
            message += f" ({self._rollback_requested})"
        if progress.kept:
            message += (
                "; everything created was kept for inspection "
                f"(run 'starter.py down {self._spec.deployment_id}' to remove it)"
            )
        elif progress.left_behind:
            message += "; rollback could not delete: " + "; ".join(progress.left_behind)
            message += " (run 'starter.py down' to retry)"
        else:
            message += "; everything created was rolled back"
        return ApplicationError(message, type="DeploymentFailed", non_retryable=True)
