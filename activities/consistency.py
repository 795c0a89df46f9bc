"""EC2 and ELBv2 are eventually consistent: a new id is not known to every call at once.

AWS's guide "Eventual consistency in the Amazon EC2 API": right after a create, calls that name the new
id can answer NotFound, and describes with filters can miss the new resource, for a short while.
Clients must retry. Two rules follow, both here:
- a call that names an id this activity made or was just handed retries "not found" with backoff until
  the attempt's deadline (`until_visible`);
- a NotFound, or a lookup that finds nothing, proves a resource gone only once it cannot be younger
  than the consistency window (`DeleteInput.settled_after`); before that, deletes look again
  (`ids_to_delete`, `delete_by_id`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

from botocore.exceptions import ClientError

from activities.aws_clients import attempt_seconds_left
from activities.errors import is_not_found, not_yet_visible
from activities.waits import Heartbeats, pause
from models.resources import Deleted, DeleteInput, Kind

T = TypeVar("T")

FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0
NO_DEADLINE_SECONDS = 60.0
"""How long to retry where the attempt has no start-to-close (none of ours; a safety net)."""


def attempt_deadline() -> float:
    """The monotonic time by which this activity attempt stops retrying not-yet-visible ids: when
    its calls must have ended (activities/aws_clients.py), leaving time to report."""
    left = attempt_seconds_left()
    if math.isinf(left):
        left = NO_DEADLINE_SECONDS
    return time.monotonic() + max(left, 0.0)


def until_visible(call: Callable[[], T], what: str, *, until: float | None = None) -> T:
    """`call`, retried with backoff while AWS does not know an id it names yet.

    `until` (monotonic seconds) defaults to the attempt's deadline. After it, the NotFound is raised:
    the id is really unknown (and the error says which)."""
    deadline = attempt_deadline() if until is None else until
    heartbeat = Heartbeats()
    delay = FIRST_BACKOFF_SECONDS
    while True:
        try:
            return call()
        except ClientError as err:
            remaining = deadline - time.monotonic()
            if not not_yet_visible(err) or remaining <= 0:
                raise
            heartbeat(f"waiting for AWS to know the id ({what})")
            pause(min(delay, remaining), f"waiting for AWS to know the id ({what})")
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


def settled_in(request: DeleteInput) -> float:
    """Seconds until a lookup or NotFound about this resource can be trusted (0: already)."""
    if request.settled_after is None:
        return 0.0
    return max((request.settled_after - datetime.now(UTC)).total_seconds(), 0.0)


def settles_at(request: DeleteInput) -> float:
    """`settled_after` as a monotonic deadline, for `until_visible`."""
    return time.monotonic() + settled_in(request)


def found_once_settled(request: DeleteInput, find: Callable[[], Iterable[str]]) -> list[str]:
    """What `find` finds; an empty answer is trusted only once the resource cannot be younger than
    the consistency window, and until then it looks again."""
    heartbeat = Heartbeats()
    while True:
        found = sorted(set(find()))
        wait = settled_in(request)
        if found or wait <= 0:
            return found
        heartbeat(f"looking for {request.key.name} until AWS's view has settled")
        pause(min(wait, request.waiting.poll_interval_seconds), f"looking for {request.key.name}")


def ids_to_delete(request: DeleteInput, find: Callable[[], Iterable[str]]) -> list[str]:
    """Every id to delete: those the workflow knows, and every resource carrying the key's tags (a
    lost reply plus a missed lookup can leave a twin)."""
    return found_once_settled(request, lambda: [*request.ids, *find()])


def if_known(request: DeleteInput, call: Callable[[], T], what: str) -> T | None:
    """`call` (a describe or delete by id); None when AWS does not know the id, which means gone only
    once it has had the consistency window to learn of it (until then the call is retried)."""
    try:
        return until_visible(call, what, until=settles_at(request))
    except ClientError as err:
        if is_not_found(err):
            return None
        raise


def delete_by_id(request: DeleteInput, call: Callable[[], object], what: str) -> bool:
    """Run a delete; False when the resource was already gone (see `if_known`)."""
    return if_known(request, call, what) is not None


def delete_each(
    request: DeleteInput, kind: Kind, find: Callable[[], Iterable[str]], delete_one: Callable[[str], object]
) -> Deleted:
    """Run `delete_one` for every id `ids_to_delete` names."""
    ids = ids_to_delete(request, find)
    for resource_id in ids:
        delete_one(resource_id)
    return Deleted.of(kind, request.key.name, ids)


def delete_every(
    request: DeleteInput, kind: Kind, find: Callable[[], Iterable[str]], delete: Callable[[str], object]
) -> Deleted:
    """Delete, by id, every resource `ids_to_delete` names: what a simple delete is."""
    return delete_each(
        request,
        kind,
        find,
        lambda resource_id: delete_by_id(request, lambda: delete(resource_id), f"{kind.value} {resource_id}"),
    )
