"""Search attributes: `list` and the Temporal UI filter deployments by id and phase.

They must be registered on the namespace (the demo passes `--search-attribute` to the dev server,
docker-compose registers them); a namespace without them still runs deployments, just unfiltered.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

DEPLOYMENT_ID = SearchAttributeKey.for_keyword("DeploymentId")
DEPLOYMENT_PHASE = SearchAttributeKey.for_keyword("DeploymentPhase")
ALL = (DEPLOYMENT_ID, DEPLOYMENT_PHASE)


def at_start(deployment_id: str, phase: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [SearchAttributePair(DEPLOYMENT_ID, deployment_id), SearchAttributePair(DEPLOYMENT_PHASE, phase)]
    )


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` arguments that register them."""
    return [flag for key in ALL for flag in ("--search-attribute", f"{key.name}=Keyword")]
