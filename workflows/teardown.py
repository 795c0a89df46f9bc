"""Teardown: delete everything tagged with a deployment id, in dependency order.

It needs nothing from the deployment's history, so `down` works for a deployment whose run is long
gone, failed half-way, or was made by an older version. Every delete is idempotent; kinds are deleted
one after another (dependants first), resources of one kind concurrently.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import InventoryActivities
    from models import naming
    from models.resources import (
        Deleted,
        DeleteInput,
        Inventory,
        Kind,
        RemainingInput,
        Resource,
        ResourceKey,
        Scope,
        TeardownInput,
        TeardownResult,
    )
    from models.spec import TimingSpec
    from workflows.deploy import COMPENSATIONS
    from workflows.options import activity_options, waiting
    from workflows.saga import root_message

DELETE_ORDER = [
    Kind.DNS_RECORD,
    Kind.LISTENER,
    Kind.CERTIFICATE,
    Kind.LOAD_BALANCER,
    Kind.INSTANCE,
    Kind.TARGET_GROUP,
    Kind.SECURITY_GROUP,
    Kind.ROUTE_TABLE,
    Kind.NAT_GATEWAY,
    Kind.ELASTIC_IP,
    Kind.SUBNET,
]


CONFIRMS_NOTHING_LEFT = "teardown-confirms-nothing-left"
"""Patch id: teardowns recorded before it ended after their deletes, without looking again."""


def workflow_id(deployment_id: str) -> str:
    return f"teardown-{deployment_id}"


def security_group_rank(resource: Resource) -> int:
    """The app group's rule references the ALB group, so the app group goes first."""
    return 0 if resource.name == naming.APP_SECURITY_GROUP else 1


@workflow.defn
class TeardownWorkflow:
    @workflow.run
    async def run(self, request: TeardownInput) -> TeardownResult:
        timing = request.timing
        inventory: Inventory = await workflow.execute_activity_method(
            InventoryActivities.discover_resources,
            request.scope,
            summary=f"Find every resource tagged with {request.scope.deployment_id}",
            **activity_options(timing),
        )
        deleted: list[Deleted] = []
        failures: list[str] = []
        for kind in DELETE_ORDER:
            found = [r for r in inventory.resources if r.kind is kind]
            if kind is Kind.SECURITY_GROUP:
                found.sort(key=security_group_rank)
                batches = [[r] for r in found]
            else:
                batches = [found] if found else []
            for batch in batches:
                results = await asyncio.gather(
                    *(self._delete(request.scope, r, timing) for r in batch),
                    return_exceptions=True,
                )
                for resource, result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        failures.append(f"{resource.kind} {resource.id}: {root_message(result)}")
                    else:
                        deleted.append(result)
        if not failures and workflow.patched(CONFIRMS_NOTHING_LEFT):
            remaining: Inventory = await workflow.execute_activity_method(
                InventoryActivities.remaining_resources,
                RemainingInput(scope=request.scope, timing=timing),
                summary=f"Check that nothing tagged with {request.scope.deployment_id} is left",
                **activity_options(timing, waiting(timing, timing.consistency_window_seconds)),
            )
            failures += [f"{r.kind} {r.id}: still there after its delete" for r in remaining.resources]
        if failures:
            raise ApplicationError(
                "teardown could not delete: " + "; ".join(failures),
                type="TeardownIncomplete",
                non_retryable=True,
            )
        return TeardownResult(deployment_id=request.scope.deployment_id, deleted=deleted)

    async def _delete(self, scope: Scope, resource: Resource, timing: TimingSpec) -> Deleted:
        wait = waiting(timing, timing.delete_timeout_seconds)
        return await workflow.execute_activity_method(
            COMPENSATIONS[resource.kind],
            DeleteInput(key=ResourceKey(scope=scope, name=resource.name), waiting=wait, ids=[resource.id]),
            summary=f"Delete {resource.kind.value} {resource.id}",
            **activity_options(timing, wait, compensation=True),
        )
