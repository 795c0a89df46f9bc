"""Tags are how a resource is found again after a crash, a lost reply or a lost history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity

from models.naming import DEPLOYMENT_TAG, GROUP_TAG, RESOURCE_TAG, display_name
from models.resources import ResourceKey, Scope

T = TypeVar("T")


def tags_for(key: ResourceKey, group: str | None = None) -> list[dict[str, str]]:
    tags = {
        **key.scope.tags,
        DEPLOYMENT_TAG: key.scope.deployment_id,
        RESOURCE_TAG: key.name,
        "Name": display_name(key.scope.deployment_id, key.name),
    }
    if group:
        tags[GROUP_TAG] = group
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_specifications(key: ResourceKey, resource_type: str, group: str | None = None) -> list:
    """EC2 tags applied in the create call itself: never a window with an untagged resource."""
    return [{"ResourceType": resource_type, "Tags": tags_for(key, group)}]


def key_filters(key: ResourceKey) -> list[dict]:
    return [
        {"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [key.scope.deployment_id]},
        {"Name": f"tag:{RESOURCE_TAG}", "Values": [key.name]},
    ]


def scope_filters(scope: Scope) -> list[dict]:
    return [{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [scope.deployment_id]}]


def tag_value(tags: list[dict[str, str]] | None, key: str) -> str | None:
    return next((tag["Value"] for tag in tags or [] if tag["Key"] == key), None)


def owned_by(tags: list[dict[str, str]] | None, scope: Scope) -> bool:
    return tag_value(tags, DEPLOYMENT_TAG) == scope.deployment_id


def client_token(key: ResourceKey, run_id: str) -> str:
    """A ClientToken stable across retries of one run, and new for the next run.

    AWS remembers tokens even for deleted resources: a token reused after a rollback would hand back
    the terminated instance, so the workflow run id is part of it.
    """
    return f"{run_id}:{key.name}"[:64]


def all_tagged(items: list[dict[str, Any]], key: ResourceKey) -> list[dict[str, Any]]:
    """Every item that really carries the key's tags: a twin (a lost reply, then a lookup that missed
    the first resource) shows up here beside the first.

    The server-side tag filter narrows the answer, but the tags are checked again here: moto ignores
    tag filters on some calls (DescribeNatGateways), and a lookup that returned another deployment's
    resource would make us adopt or delete it.
    """
    return [
        item
        for item in items
        if owned_by(item.get("Tags"), key.scope) and tag_value(item.get("Tags"), RESOURCE_TAG) == key.name
    ]


def first_tagged(items: list[dict[str, Any]], key: ResourceKey) -> dict[str, Any] | None:
    """The first item that really carries the key's tags (see `all_tagged`)."""
    return next(iter(all_tagged(items, key)), None)


def all_owned(items: list[dict[str, Any]], scope: Scope) -> list[dict[str, Any]]:
    """Items that really carry the deployment's tag (see `first_tagged`)."""
    return [item for item in items if owned_by(item.get("Tags"), scope)]


def earlier(key: ResourceKey, find: Callable[[], T | None]) -> T | None:
    """What an earlier attempt or run made under this key, looked up unless nothing can have made it.

    Most creates are first attempts of new deployments, where the lookup finds nothing: skipping it
    there saves a describe per resource. A retry always looks, since the attempt before may have
    created the resource and lost the reply."""
    if key.known_new and activity.info().attempt == 1:
        return None
    return find()
