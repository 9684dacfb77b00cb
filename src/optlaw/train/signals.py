"""Preemption: SIGTERM / SIGUSR1 ask the run to checkpoint and leave at the next step boundary.

SLURM sends SIGUSR1 (with --signal) or SIGTERM before it kills a job; a requeued
job reruns the same command, which resumes from the checkpoint.
"""

from __future__ import annotations

import signal
from types import FrameType

# EX_TEMPFAIL from sysexits.h: "try again later" -- distinct from success (0),
# failure (1) and bad input (2), so a wrapper knows to requeue.
PREEMPTED_EXIT_CODE = 75


class Preempted(Exception):
    """The run saved a checkpoint and stopped because it was asked to."""

    def __init__(self, signal_name: str, step: int) -> None:
        super().__init__(f"preempted by {signal_name} at step {step}; checkpoint written, rerun the same command to resume")
        self.signal_name = signal_name
        self.step = step


class PreemptionFlag:
    """Installs handlers that only set a flag; the training loop checks it between steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> PreemptionFlag:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners)
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None
