"""aws-smoke's timings: each step's real duration next to the latency model's (simulate/).

Real figures come from the deployment's own progress (each step's start and end, as `status`
shows them) and from the teardown run's history; the model's from simulate/profile.yaml through
simulate/architecture.py, in real-scale seconds. A user's report of this table is how the model
learns about their account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.table import Table
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from models import naming
from models.plan import HEALTHY, PREFLIGHT, plan
from models.progress import DeploymentProgress
from models.resources import Kind
from models.spec import DeploymentSpec
from simulate.architecture import ARCHITECTURE, TEARDOWN, Step, longest_path, observed_spans
from simulate.profile import LatencyProfile
from workflows.deploy import COMPENSATIONS
from workflows.teardown import DELETE_ORDER

KIND_STEP = {
    Kind.SUBNET: "private subnets",
    Kind.ELASTIC_IP: "elastic ip",
    Kind.NAT_GATEWAY: "nat gateway",
    Kind.ROUTE_TABLE: "route table",
    Kind.TARGET_GROUP: "target group",
    Kind.LOAD_BALANCER: "load balancer",
    Kind.INSTANCE: "instances",
    Kind.TARGET_REGISTRATION: "register targets",
    Kind.LISTENER: "listener",
    Kind.CERTIFICATE: "certificate",
    Kind.DNS_RECORD: "dns records",
}
"""The model's step for each kind of resource the workflow creates (HTTPS's have none in the model)."""
KEY_STEP = {
    PREFLIGHT: "preflight",
    HEALTHY: "healthy",
    naming.ALB_SECURITY_GROUP: "alb security group",
    naming.APP_SECURITY_GROUP: "app security group",
}
"""Workflow steps that no kind names alone."""
TEARDOWN_ACTIVITIES = {
    "discover_resources": "find resources",
    "remaining_resources": "confirm nothing left",
    **{
        COMPENSATIONS[kind].__name__: "security groups" if kind is Kind.SECURITY_GROUP else KIND_STEP[kind]
        for kind in DELETE_ORDER
    },
}
CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}


@dataclass(frozen=True)
class Row:
    step: str
    real: float | None
    """Seconds; None when the step did not run (or its times are unknown)."""
    model: float | None
    real_done: float | None = None
    """Seconds from the start of the run it belongs to."""
    model_done: float | None = None


Span = tuple[float, float]


def model_step(key: str, kind: Kind | None) -> str | None:
    return KEY_STEP.get(key) or (KIND_STEP.get(kind) if kind is not None else None)


def deployment_spans(spec: DeploymentSpec, progress: DeploymentProgress) -> dict[str, Span]:
    """Each model step's real (first start, last end), in seconds from the deployment's first start.

    Steps of one model step (a subnet per AZ, an instance each) ran concurrently: their span is one."""
    kinds = {step.key: step.kind for step in plan(spec)}
    timed = [s for s in progress.steps if s.started_at is not None and s.finished_at is not None]
    if not timed:
        return {}
    t0 = min(s.started_at for s in timed if s.started_at is not None)
    spans: dict[str, Span] = {}
    for step in timed:
        name = model_step(step.key, kinds.get(step.key))
        if name is None or step.started_at is None or step.finished_at is None:
            continue
        start, end = seconds(step.started_at, t0), seconds(step.finished_at, t0)
        old = spans.get(name, (start, end))
        spans[name] = (min(old[0], start), max(old[1], end))
    return spans


def seconds(moment: datetime, t0: datetime) -> float:
    return (moment - t0).total_seconds()


def teardown_spans(history: WorkflowHistory) -> dict[str, Span]:
    """Each model step's real (first scheduled, last closed), in seconds from the run's start."""
    scheduled: dict[int, tuple[str, float]] = {}
    spans: dict[str, Span] = {}
    t0: float | None = None
    for event in history.events:
        at = event.event_time.seconds + event.event_time.nanos / 1e9
        t0 = at if t0 is None else t0
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (TEARDOWN_ACTIVITIES.get(name, name), at - t0)
        elif event.event_type in CLOSED:
            scheduled_id = getattr(event, CLOSED[event.event_type]).scheduled_event_id
            name, start = scheduled[scheduled_id]
            old = spans.get(name, (start, at - t0))
            spans[name] = (min(old[0], start), max(old[1], at - t0))
    return spans


def rows(graph: dict[str, Step], profile: LatencyProfile, spans: dict[str, Span]) -> list[Row]:
    """One row per model step that has an observable counterpart, in the model's finishing order."""
    observed = {name for name in graph if name in spans} or set(graph) - {"app"}
    model = observed_spans(graph, profile, observed)
    ordered = sorted(model, key=lambda name: (model[name][1], name))
    return [row(name, spans.get(name), model[name]) for name in ordered]


def row(name: str, real: Span | None, model: Span) -> Row:
    return Row(
        step=name,
        real=None if real is None else real[1] - real[0],
        model=model[1] - model[0],
        real_done=None if real is None else real[1],
        model_done=model[1],
    )


def deployment_rows(
    spec: DeploymentSpec, progress: DeploymentProgress | None, profile: LatencyProfile
) -> list[Row]:
    return rows(ARCHITECTURE, profile, deployment_spans(spec, progress) if progress else {})


def teardown_rows(history: WorkflowHistory | None, profile: LatencyProfile) -> list[Row]:
    return rows(TEARDOWN, profile, teardown_spans(history) if history else {})


def modelled_deployment(profile: LatencyProfile) -> float:
    """The model's whole deployment: its critical path (the NAT chain, the app's boot, the health check)."""
    return longest_path(ARCHITECTURE, profile)[0]


def modelled_teardown(profile: LatencyProfile) -> float:
    return longest_path(TEARDOWN, profile)[0]


def table(title: str, found: list[Row], first_column: str = "step") -> Table:
    out = Table(title=title)
    out.add_column(first_column)
    for column in ("real s", "model s", "real / model", "done at real s", "done at model s"):
        out.add_column(column, justify="right")
    for item in found:
        out.add_row(
            item.step,
            figure(item.real),
            figure(item.model),
            ratio(item.real, item.model),
            figure(item.real_done),
            figure(item.model_done),
        )
    return out


def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def ratio(real: float | None, model: float | None) -> str:
    return "-" if real is None or not model else f"{real / model:.2f}"
