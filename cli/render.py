"""What the terminal shows: progress as it happens, and tables of what exists."""

from __future__ import annotations

import sys
from datetime import datetime

from rich.console import Console
from rich.table import Table

from models.cost import CostEstimate
from models.diff import Action, ResourceAction
from models.drift import DriftReport
from models.plan import PlannedChange
from models.progress import DeploymentProgress, StepProgress, StepState
from models.resources import DeploymentOutputs, TeardownResult

STATE_STYLES = {
    StepState.PENDING: "dim",
    StepState.RUNNING: "yellow",
    StepState.DONE: "green",
    StepState.FAILED: "bold red",
    StepState.CANCELLED: "magenta",
    StepState.COMPENSATING: "yellow",
    StepState.COMPENSATED: "cyan",
    StepState.LEFT_BEHIND: "bold red",
}


def elapsed(step: StepProgress, now: datetime) -> str:
    if step.started_at is None:
        return ""
    end = step.finished_at or now
    return f"{(end - step.started_at).total_seconds():.1f}s"


def progress_table(progress: DeploymentProgress, now: datetime) -> Table:
    table = Table(title=f"{progress.deployment_id} ({progress.region}): {progress.phase.value}")
    for column in ("step", "state", "time"):
        table.add_column(column)
    table.add_column("resource", overflow="fold")
    for step in progress.steps:
        style = STATE_STYLES[step.state]
        table.add_row(
            step.summary, f"[{style}]{step.state.value}[/]", elapsed(step, now), step.resource_id or ""
        )
    return table


def step_line(step: StepProgress, now: datetime) -> str:
    """One line per state change, for logs and terminals without live redraw."""
    time = elapsed(step, now)
    resource = f" {step.resource_id}" if step.resource_id else ""
    error = f" ({step.error})" if step.error else ""
    return f"[{time:>7}] {step.state.value:<12} {step.summary}{resource}{error}"


def outputs_table(outputs: DeploymentOutputs) -> Table:
    table = Table(title=f"Resources of {outputs.deployment_id}")
    add_columns(table)
    table.add_row("vpc", "default" if outputs.vpc_id else "", outputs.vpc_id)
    for az, subnet in outputs.public_subnet_ids.items():
        table.add_row("public subnet (existing)", az, subnet)
    for resource in outputs.resources:
        table.add_row(resource.kind.value, resource.name, resource.id)
    return table


def plan_table(deployment_id: str, planned: list[PlannedChange]) -> Table:
    table = Table(title=f"Plan for {deployment_id}")
    for column in ("action", "kind", "name", "what"):
        table.add_column(column)
    table.add_column("id", overflow="fold")
    for change in planned:
        action = "[green]+ create[/]" if change.action == "create" else "[dim]= exists[/]"
        table.add_row(action, change.kind.value, change.key, change.summary, change.id or "")
    return table


ACTION_STYLES = {
    Action.CREATE: "[green]+ create[/]",
    Action.UPDATE: "[yellow]~ update in place[/]",
    Action.REPLACE: "[bold yellow]-/+ replace[/]",
    Action.DELETE: "[red]- delete[/]",
    Action.UNCHANGED: "[dim]= unchanged[/]",
    Action.REFUSED: "[bold red]! refused[/]",
}


def diff_table(deployment_id: str, actions: list[ResourceAction]) -> Table:
    """Per resource, like `terraform plan`: the action, and each changing field with both values."""
    table = Table(title=f"Plan for the live deployment {deployment_id}")
    for column in ("action", "kind", "name", "change"):
        table.add_column(column, overflow="fold")
    table.add_column("id", overflow="fold")
    for action in actions:
        change = "\n".join(f"{c.field}: {c.before} -> {c.after}" for c in action.changes)
        if action.reason and action.action is not Action.UNCHANGED:
            change = f"{change}\n[dim]{action.reason}[/]" if change else f"[dim]{action.reason}[/]"
        kind = action.kind.value if action.kind else ""
        table.add_row(ACTION_STYLES[action.action], kind, action.name, change, action.id or "")
    return table


def cost_change_table(before: CostEstimate, after: CostEstimate) -> Table:
    table = Table(
        title=f"Standing cost, live and after (prices of {after.region}, taken {after.prices_taken})",
        caption="; ".join(dict.fromkeys([*before.notes, *after.notes])),
    )
    for column in ("", "USD/hour", "USD/month"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("live now", f"{before.hourly_usd:.4f}", f"{before.monthly_usd:.2f}")
    table.add_row("after the change", f"{after.hourly_usd:.4f}", f"{after.monthly_usd:.2f}")
    delta, monthly = after.hourly_usd - before.hourly_usd, after.monthly_usd - before.monthly_usd
    table.add_row("[bold]change[/]", f"[bold]{delta:+.4f}[/]", f"[bold]{monthly:+.2f}[/]")
    return table


def cost_table(cost: CostEstimate) -> Table:
    table = Table(
        title=f"Standing cost (prices of {cost.region}, taken {cost.prices_taken})",
        caption="; ".join(cost.notes),
    )
    for column in ("item", "qty", "USD/hour", "USD/month"):
        table.add_column(column, justify="left" if column == "item" else "right")
    for line in cost.lines:
        hourly = "?" if line.hourly_usd is None else f"{line.hourly_usd:.4f}"
        monthly = "?" if line.hourly_usd is None else f"{line.hourly_usd * 730:.2f}"
        table.add_row(line.item, f"{line.quantity:g}", hourly, monthly)
    table.add_row("[bold]total[/]", "", f"[bold]{cost.hourly_usd:.4f}[/]", f"[bold]{cost.monthly_usd:.2f}[/]")
    return table


def teardown_table(result: TeardownResult) -> Table:
    table = Table(title=f"Deleted from {result.deployment_id}")
    add_columns(table)
    for item in result.deleted:
        if item.id:
            table.add_row(item.kind.value, item.name, item.id)
    return table


def add_columns(table: Table) -> None:
    """Resource ids are what people copy: never cut them short."""
    table.add_column("kind")
    table.add_column("name", overflow="fold")
    table.add_column("id", overflow="fold")


PIPE_WIDTH = 200
"""Logs and pipes get full resource ids on one line instead of an 80-column fold."""


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else PIPE_WIDTH)


def stdout_console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def drift_table(report: DriftReport) -> Table:
    """One row per difference: what drifted, the field, and both values."""
    table = Table(
        title=f"Drift of {report.deployment_id} (checked {report.checked_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    for column in ("drift", "kind", "name", "field", "expected", "live"):
        table.add_column(column, overflow="fold")
    table.add_column("id", overflow="fold")
    for item in report.items:
        table.add_row(
            item.drift.value,
            item.kind.value,
            item.name,
            item.field or "",
            item.expected or "",
            item.actual or "",
            item.id or "",
        )
    return table
