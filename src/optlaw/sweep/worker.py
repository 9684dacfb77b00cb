"""A worker process that imports torch once and trains many grid points, one after another.

Starting a point as its own ``optlaw train`` process costs the Python start, the import
of torch, transformers and optlaw, and the corpus set-up: seconds that dwarf a CPU point
of a few seconds. A worker pays that once. The local launcher keeps ``max_parallel``
workers and hands them points over a pipe (``serve``); a packed SLURM job runs its pack
in one worker (``run_pack``).

Isolation, point by point, as close to a fresh process as one process allows:
  - every exception of a point is caught: the point's record says ``failed`` (written by
    the trainer) and the worker goes on with its next point;
  - a hard crash (segfault, OOM kill) ends the worker: the launcher sees the point it was
    running unfinished and reruns it in a fresh worker (it resumes from its checkpoint);
  - the output of a point goes to its own log, at the file-descriptor level (C++ warnings
    included);
  - state a point may leave behind is reset before the next: torch's thread count, the
    environment, the working directory, warning filters, torch.compile's caches and
    signal handlers (``reset_process_state``);
  - SIGTERM/SIGUSR1 during training reach the trainer's own handlers, which checkpoint
    (exit 75, as ``optlaw train``); outside training a busy worker dies of the signal,
    exactly as a fresh ``optlaw train`` process would, and an idle worker just stops.

The command each point runs is the argv of ``optlaw`` (``["train", ...]``); the function
that runs it (the console script's ``main``) is handed in by the entry layer, which this
stage may not import.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from optlaw.errors import UserError

# argv of the optlaw console script (without "optlaw") -> exit code, e.g. optlaw.entry.cli.main
RunCli = Callable[[list[str]], int]

# SIGINT keeps Python's KeyboardInterrupt, which `optlaw train` turns into exit 130 itself.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT_CODE = 75  # optlaw train's "checkpoint written, rerun to resume" (train.signals)
INTERRUPTED_EXIT_CODE = 130  # optlaw's Ctrl-C
STOPPING_CODES = (PREEMPTED_EXIT_CODE, INTERRUPTED_EXIT_CODE)
# The module a launcher starts a worker with (the entry layer's wrapper of this one).
WORKER_MODULE = "optlaw.entry.worker_cmd"


class _IdleStop(Exception):
    """A stop signal arrived while no point was running."""


class Worker:
    """Runs optlaw commands in this process, one at a time, each isolated from the next."""

    def __init__(self, run_cli: RunCli):
        self.run_cli = run_cli
        self.busy = False
        self.stop_signal: int | None = None
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        self._baseline = _ProcessState.capture()

    def _on_signal(self, signum: int, _frame) -> None:
        self.stop_signal = signum
        if self.busy:
            # Outside the trainer's own handlers (set-up, final writes): die of the signal,
            # as a fresh `optlaw train` would; the record stays resumable.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise _IdleStop()

    def run(self, argv: list[str], log_path: str | Path) -> int:
        """Run ``optlaw <argv>`` here with its output appended to ``log_path``; its exit code (never raises)."""
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with _output_to(log_path) as log:
            log.write(f"\n# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                      f"{sys.executable} -m optlaw {' '.join(argv)}  (in worker pid {os.getpid()})\n")
            log.flush()
            self._baseline.restore()
            self.busy = True
            try:
                with warnings.catch_warnings():
                    code = int(self.run_cli(list(argv)) or 0)
            except UserError as exc:  # the console script prints these itself; belt and braces
                print(f"error: {exc}", file=sys.stderr)
                code = 2
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except KeyboardInterrupt:
                code = INTERRUPTED_EXIT_CODE
            except BaseException:  # noqa: BLE001 - a point's crash must not end the worker
                traceback.print_exc()
                code = 1
            finally:
                self.busy = False
                sys.stdout.flush()
                sys.stderr.flush()
            self._baseline.restore()
        return code


class _ProcessState:
    """What a point may change in its process that a fresh process would not have seen."""

    def __init__(self, threads: int, environ: dict[str, str], cwd: str, handlers: dict):
        self.threads, self.environ, self.cwd, self.handlers = threads, environ, cwd, handlers

    @classmethod
    def capture(cls) -> _ProcessState:
        import torch

        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
        return cls(torch.get_num_threads(), dict(os.environ), os.getcwd(), handlers)

    def restore(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        for signum, handler in self.handlers.items():
            if signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        if "torch._dynamo" in sys.modules:  # compiled graphs of the last model, and its recompile count
            torch._dynamo.reset()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


@contextlib.contextmanager
def _output_to(log_path: Path) -> Iterator[TextIO]:
    """Point fds 1 and 2 (and sys.stdout/err) at ``log_path`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log  # also when sys.stdout is not fd 1 (a test's capture)
        try:
            yield log
        finally:
            log.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def serve(run_cli: RunCli, requests: TextIO, replies: TextIO) -> int:
    """The local launcher's worker: one JSON request per line in, one reply per point out.

    Request ``{"run_id", "argv", "log"}``; reply ``{"run_id", "code"}``. Ends at the end
    of ``requests`` (the launcher closed the pipe, or died), on a stop signal, or after
    a point was preempted (the launcher is stopping).
    """
    worker = Worker(run_cli)
    _reply(replies, {"ready": os.getpid()})
    try:
        for line in requests:
            if not line.strip():
                continue
            request = json.loads(line)
            code = worker.run(request["argv"], request["log"])
            _reply(replies, {"run_id": request["run_id"], "code": code})
            if worker.stop_signal is not None or code in STOPPING_CODES:
                break
    except (_IdleStop, KeyboardInterrupt):
        pass
    return 0


def _reply(replies: TextIO, message: dict) -> None:
    try:
        replies.write(json.dumps(message) + "\n")
        replies.flush()
    except (BrokenPipeError, OSError):
        pass  # the launcher is gone; the parent-death signal ends this worker


def run_pack(run_cli: RunCli, points: list[tuple[str, list[str], str]], on_end: Callable[[str, int], bool] | None = None,
             out: TextIO | None = None) -> tuple[dict[str, int], bool]:
    """Run ``(run_id, argv, log)`` points one after another in this process.

    ``on_end(run_id, code)`` is called after each; it returns False to stop the pack.
    Returns the exit codes and whether the pack was stopped (signal or preemption)
    before its end.
    """
    out = out or sys.stdout
    worker = Worker(run_cli)
    codes: dict[str, int] = {}
    try:
        for run_id, argv, log in points:
            print(f"start {run_id}", file=out, flush=True)
            code = worker.run(argv, log)
            codes[run_id] = code
            print(f"end   {run_id}: exit code {code}", file=out, flush=True)
            keep_going = on_end(run_id, code) if on_end is not None else True
            if worker.stop_signal is not None or code in STOPPING_CODES or not keep_going:
                return codes, True
    except (_IdleStop, KeyboardInterrupt):
        return codes, True
    return codes, False


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that makes a launcher's child get ``signum`` when the launcher dies.

    Linux's PR_SET_PDEATHSIG through ctypes (no dependency for one system call). SIGTERM,
    not SIGKILL: a training child checkpoints on it and leaves, so nothing trains on
    unsupervised and nothing is lost. Elsewhere a no-op: workers also stop when their
    request pipe closes.
    """

    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        # Looked up here, in the parent: the child between fork and exec should only make the call.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        if prctl is None:
            return
        prctl(pr_set_pdeathsig, int(signum), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def serve_stdio(run_cli: RunCli, warm_up: Callable[[], None] | None = None) -> int:
    """``serve`` on this process's stdin and stdout, as the local launcher starts it."""
    # Replies go on the original stdout; anything else printed between points goes to stderr (the worker's log).
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if warm_up is not None:
        warm_up()
    return serve(run_cli, sys.stdin, replies)
