"""Preemption: SIGTERM / SIGUSR1 / SIGINT ask the run to checkpoint and leave at the next step boundary.

SLURM sends SIGUSR1 (with --signal) or SIGTERM before it kills a job; a requeued
job reruns the same command, which resumes from the checkpoint. Ctrl-C (SIGINT) does
the same and exits 130, as an interrupted command does; a second Ctrl-C stops at once
(KeyboardInterrupt), and the run resumes from its previous checkpoint.
"""

from __future__ import annotations

import signal
from types import FrameType

# EX_TEMPFAIL from sysexits.h: "try again later" -- distinct from success (0),
# failure (1) and bad input (2), so a wrapper knows to requeue.
PREEMPTED_EXIT_CODE = 75
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class Preempted(Exception):
    """The run saved a checkpoint and stopped because it was asked to."""

    def __init__(self, signal_name: str, step: int) -> None:
        cause = "interrupted by Ctrl-C (SIGINT)" if signal_name == "SIGINT" else f"preempted by {signal_name}"
        super().__init__(f"{cause} at step {step}; checkpoint written, rerun the same command to resume")
        self.signal_name = signal_name
        self.step = step

    @property
    def exit_code(self) -> int:
        return INTERRUPTED_EXIT_CODE if self.signal_name == "SIGINT" else PREEMPTED_EXIT_CODE


class PreemptionFlag:
    """Installs handlers that only set a flag; the training loop checks it between steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> PreemptionFlag:
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners)
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signal_name == "SIGINT":
            raise KeyboardInterrupt  # a second Ctrl-C: leave now, without the checkpoint
        if signum == signal.SIGINT:
            print("Ctrl-C: writing a checkpoint after this step, then stopping (Ctrl-C again to stop at once)",
                  flush=True)
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None
