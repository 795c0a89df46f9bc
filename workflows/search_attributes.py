"""Search attributes: `list` and the Temporal UI filter deployments by id, phase, drift and deadline.

They must be registered on the namespace (the demo passes `--search-attribute` to the dev server,
docker-compose registers them); a namespace without them still runs deployments, just unfiltered.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

DEPLOYMENT_ID = SearchAttributeKey.for_keyword("DeploymentId")
DEPLOYMENT_PHASE = SearchAttributeKey.for_keyword("DeploymentPhase")
DEPLOYMENT_DRIFT = SearchAttributeKey.for_bool("DeploymentDrift")
"""True while the last drift check found a difference (`list --drifted`, `DeploymentDrift = true`)."""
DEPLOYMENT_EXPIRES = SearchAttributeKey.for_datetime("DeploymentExpires")
"""The time-to-live's deadline, when the deployment has one."""
ALL = (DEPLOYMENT_ID, DEPLOYMENT_PHASE, DEPLOYMENT_DRIFT, DEPLOYMENT_EXPIRES)
SERVER_TYPES = {"KEYWORD": "Keyword", "BOOL": "Bool", "DATETIME": "Datetime"}


def at_start(deployment_id: str, phase: str) -> TypedSearchAttributes:
    """A standalone operation's (`deploy-<id>`): the id and the phase."""
    return TypedSearchAttributes(
        [SearchAttributePair(DEPLOYMENT_ID, deployment_id), SearchAttributePair(DEPLOYMENT_PHASE, phase)]
    )


def for_deployment(deployment_id: str, phase: str) -> list[TypedSearchAttributes | None]:
    """What a deployment's long-lived workflow starts with, best first: every attribute (its drift
    false until a check finds some; the workflow sets the others only when this one is there), the id
    and phase only (a namespace set up before drift and deadlines existed), none."""
    basic = at_start(deployment_id, phase)
    full = TypedSearchAttributes([*basic.search_attributes, SearchAttributePair(DEPLOYMENT_DRIFT, False)])
    return [full, basic, None]


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` arguments that register them."""
    return [
        flag
        for key in ALL
        for flag in ("--search-attribute", f"{key.name}={SERVER_TYPES[key.indexed_value_type.name]}")
    ]
