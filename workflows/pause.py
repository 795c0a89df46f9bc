"""`on_failure: pause`: a step that fails for good waits for the operator instead of unwinding at once.

A base class of the create (DeployWorkflow) and of a change (ConvergeWorkflow): both answer the same
`retry` and `rollback` updates with the same validator, so `starter.py` addresses either alike, and
both run their steps through the same tracked loop. A pause that nobody decides within
`timing.pause_timeout_seconds` rolls back, as the default policy would have at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from models.progress import Phase, StepState
    from models.spec import DeploymentSpec, OnFailure
    from workflows.progress import ProgressTracker

T = TypeVar("T")

OPERATION_PAUSED = "operation_paused"
"""The signal a paused operation sends its parent: True when it pauses, False when it goes on."""


class Pausable:
    """The operator's choice while paused, and the step loop that waits for it."""

    _spec: DeploymentSpec
    _tracker: ProgressTracker | None

    def __init__(self) -> None:
        self._tracker = None
        self._retries_requested = 0
        self._rollback_requested: str | None = None

    @workflow.update
    def retry(self) -> str:
        """Run the failed step(s) again and go on; the steps before them are not repeated."""
        self._retries_requested += 1
        return f"retrying {', '.join(self._failed_steps())}"

    @workflow.update
    def rollback(self) -> str:
        self._rollback_requested = "rollback requested by the operator"
        return "rolling back"

    @retry.validator
    def _only_while_paused(self) -> None:
        if self._tracker is None or self._tracker.progress.phase is not Phase.PAUSED:
            phase = self._tracker.progress.phase.value if self._tracker else "starting"
            raise ApplicationError(f"the deployment is not paused (it is {phase}); nothing to decide")

    @rollback.validator
    def _rollback_while_paused(self) -> None:
        self._only_while_paused()

    def _failed_steps(self) -> list[str]:
        assert self._tracker is not None
        return [s.key for s in self._tracker.progress.steps if s.state is StepState.FAILED]

    def _pauses(self) -> bool:
        """Whether a step's permanent failure pauses the run now (a subclass may narrow it)."""
        return self._spec.on_failure is OnFailure.PAUSE

    async def _tracked(
        self,
        step: str,
        run: Callable[[bool], Awaitable[T]],
        shown: Callable[[T], Any] = lambda result: result,
    ) -> T:
        """Run a step with its progress; under pause its failure waits, and `retry` runs it again.

        `run(again)`: `again` is True for a run after a pause, which must look for what the failed run
        may have made. `shown` turns the result into what the progress records as the step's resource.
        """
        tracker = self._tracker
        assert tracker is not None
        again = False
        while True:
            tracker.started(step)
            try:
                result = await run(again)
            except BaseException as err:
                tracker.ended_with(step, err)
                if is_cancelled_exception(err) or not self._pauses() or not await self._paused(err):
                    raise
                tracker.resumed(step)
                again = True
                continue
            tracker.done(step, shown(result))
            return result

    async def _paused(self, cause: BaseException) -> bool:
        """Wait for the operator: True to retry the failed step, False to roll back.

        Sibling branches go on meanwhile; those that need the failed step wait for it.
        """
        assert self._tracker is not None
        retries_before = self._retries_requested
        timeout = timedelta(seconds=self._spec.timing.pause_timeout_seconds)
        self._tracker.paused(cause, workflow.now() + timeout)
        await self._tell_parent(paused=True)
        try:
            await workflow.wait_condition(
                lambda: self._retries_requested > retries_before or self._rollback_requested is not None,
                timeout=timeout,
            )
        except TimeoutError:
            self._rollback_requested = f"nobody decided within {timeout}"
        await self._tell_parent(paused=False)
        return self._rollback_requested is None

    async def _tell_parent(self, *, paused: bool) -> None:
        """The deployment's own workflow, when it runs this operation, shows the pause too (its phase
        and search attribute), so `list --phase paused` and the UI find the deployment."""
        parent = workflow.info().parent
        if parent is not None:
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(OPERATION_PAUSED, paused)
