"""The launch loop of a tuning sweep: plan a round, run it, plan the next, until every cell is finished.

How points run is not decided here: ``launch`` (the local launcher, SLURM submission, or any
executor a caller passes) gets the run ids of the round and returns. The plan comes from
``plan_round``, which replays the records (optlaw.sweep.tuning), so the loop holds no state
of its own that a kill could lose.

- A blocking launch (local): after it returns, the next round is planned at once. A point
  it ran that did not finish (Ctrl-C, a crash) stops the loop: relaunching resumes it.
  With ``stream`` the launch is also handed ``more``, which it calls whenever a point ends:
  the records are replayed again and every newly plannable point, of any cell, is returned
  to run at once, so no slot idles until the slowest point of a round has finished.
- A queueing launch (SLURM): without ``follow`` the loop stops after queueing the round
  (launch again once it finished to plan the next one); with ``follow`` it polls the records
  until the round's points are finished, then plans the next round.
- Points another launch or a queued job is training are waited for (polling), never run
  twice: the claims decide, as for any sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from optlaw import records
from optlaw.sweep.manifest import write_tuning_manifest
from optlaw.sweep.state import PointState, all_states, needs_run
from optlaw.sweep.tuning import TuningPlan, TuningPlanner


@dataclass
class RoundsOutcome:
    """What one launch of a tuning sweep did."""

    launched: list[str] = field(default_factory=list)        # run ids started or submitted here, in order
    statuses: dict[str, str] = field(default_factory=dict)   # run id -> record status (blocking launches)
    job_ids: list[str] = field(default_factory=list)          # SLURM jobs submitted
    plan: TuningPlan | None = None                            # the last plan
    stopped: str = ""                                         # why the loop ended before the tuning was complete
    waiting: bool = False                                     # it ended with the round queued or training elsewhere

    @property
    def complete(self) -> bool:
        return self.plan is not None and self.plan.complete


# plan_round() -> (manifest written for this plan, the plan); launch(run_ids) -> (statuses, job ids);
# with stream=True: launch(run_ids, more=...) where more() -> run ids that became runnable since.
PlanRound = Callable[[], "tuple[dict, TuningPlan]"]
Launch = Callable[..., "tuple[dict[str, str], list[str]]"]
OnPlan = Callable[[dict, TuningPlan, "list[PointState]", "list[str]"], None]


def plan_and_write(planner: TuningPlanner) -> PlanRound:
    """The usual ``plan_round``: plan from the records, merge the plan into the manifest, return both."""
    def plan_round() -> tuple[dict, TuningPlan]:
        plan = planner.plan()
        extra = list(planner.definition.get("cli_overrides") or [])
        return write_tuning_manifest(planner.sweep_dir, planner.definition, plan.points, extra,
                                     plan.manifest_section()), plan
    return plan_round


def run_rounds(sweep_dir: str | Path, plan_round: PlanRound, launch: Launch, *, blocking: bool, follow: bool = False,
               retry_diverged: bool = False, dry_run: bool = False, poll_s: float = 2.0,
               on_plan: OnPlan | None = None, stream: bool = False) -> RoundsOutcome:
    outcome = RoundsOutcome()
    attempted: set[str] = set()
    replans = 0

    def planned() -> tuple[dict, TuningPlan, list[PointState], list[str]]:
        manifest, plan = plan_round()
        outcome.plan = plan
        current = {p.run_id for p in plan.points}
        states = [s for s in all_states(sweep_dir, manifest) if s.run_id in current]
        # A point this launch already ran is not run again by it (a failing point would loop forever).
        return manifest, plan, states, [s.run_id for s in states if s.run_id not in attempted and needs_run(s, retry_diverged)]

    def more() -> list[str]:
        """Called by a streaming launch when a point ends: the points that became runnable since."""
        manifest, plan, states, new = planned()
        if new:
            attempted.update(new)
            outcome.launched.extend(new)
            if on_plan is not None:
                on_plan(manifest, plan, states, new)
        return new

    while True:
        manifest, plan, states, to_run = planned()
        if on_plan is not None:
            on_plan(manifest, plan, states, to_run)
        if dry_run:
            return outcome
        if to_run:
            attempted |= set(to_run)
            outcome.launched += to_run
            statuses, job_ids = launch(to_run, more=more) if stream and blocking else launch(to_run)
            outcome.statuses.update(statuses)
            outcome.job_ids += job_ids
            unfinished = [r for r, status in statuses.items() if status not in records.FINISHED]
            if unfinished:
                outcome.stopped = (f"{len(unfinished)} point(s) did not finish ({', '.join(sorted(set(statuses[r] for r in unfinished)))}); "
                                   "launch again to resume them")
                return outcome
            if not blocking and not follow:
                outcome.stopped = "queued this round; launch again after it finishes (or add --follow) to plan the next"
                outcome.waiting = True
                return outcome
            continue
        if plan.complete:
            return outcome
        # The plan read the records before the states did: a point that finished in between (its job
        # ended, its claim went) is pending in the plan and done in the states. Plan again (bounded, in
        # case a record the states call done is one the replay cannot use).
        finished_since = {s.run_id for s in states if s.state in ("done", "diverged")} & set(plan.state.pending)
        if finished_since and replans < 3:
            replans += 1
            continue
        replans = 0
        live = [s for s in states if s.state == "running"]
        if live and (blocking or follow):
            try:
                time.sleep(poll_s)
            except KeyboardInterrupt:
                outcome.stopped = "interrupted while waiting; launch again to continue"
                return outcome
            continue
        if live:
            outcome.stopped = f"{len(live)} point(s) of this round are still training elsewhere; launch again after they finish"
            outcome.waiting = True
        else:
            outcome.stopped = "no point can run: " + _blocked_text(plan, states, attempted)
        return outcome


def _blocked_text(plan: TuningPlan, states: list[PointState], attempted: set[str]) -> str:
    failed = [s.run_id for s in states if s.state == "failed" and s.run_id in attempted]
    if failed:
        return f"{len(failed)} point(s) failed in this launch ({', '.join(failed[:3])}); see their logs, then launch again"
    blocked = [c for c in plan.state.cells if c.status == "blocked"]
    if blocked:
        return "; ".join(f"{c.spec.label}: {c.note}" for c in blocked[:3])
    return "the remaining cells wait on points that did not finish"
