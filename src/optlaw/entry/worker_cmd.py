"""``python -m optlaw.entry.worker_cmd``: the launchers' in-process worker (optlaw.sweep.worker).

``serve``: the local launcher's worker, points in on stdin, results out on stdout.
``pack``: a SLURM job's points, one after another in this process.
It lives in the entry layer because what it runs is the console script itself
(``optlaw.entry.cli.main``), handed down to the sweep stage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from optlaw.entry.cli import main as cli_main
from optlaw.sweep import worker
from optlaw.sweep.job import run_sweep_pack

USAGE = """\
usage: python -m optlaw.entry.worker_cmd serve                                   (the local launcher's worker)
       python -m optlaw.entry.worker_cmd pack SWEEP_DIR RUN_ID... [--retry-diverged]
       python -m optlaw.entry.worker_cmd pack SWEEP_DIR --packs FILE --index I [--retry-diverged]
"""


def warm_up() -> None:
    """Import what every LLM point needs once, before the first point arrives."""
    import optlaw.data  # noqa: F401
    import optlaw.entry.train_cmd  # noqa: F401
    import optlaw.models  # noqa: F401
    import optlaw.optim  # noqa: F401
    import optlaw.train.trainer  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["serve"]:
        return worker.serve_stdio(cli_main, warm_up)
    if argv[:1] != ["pack"] or len(argv) < 3:
        print(USAGE, file=sys.stderr)
        return 2
    retry = "--retry-diverged" in argv
    rest = [a for a in argv[2:] if a != "--retry-diverged"]
    if rest[:1] == ["--packs"]:
        if len(rest) != 4 or rest[2] != "--index":
            print(USAGE, file=sys.stderr)
            return 2
        packs = json.loads(Path(rest[1]).read_text())
        index = int(rest[3])
        if not 0 <= index < len(packs):
            print(f"error: --index {index} is outside the {len(packs)} packs of {rest[1]}", file=sys.stderr)
            return 2
        rest = packs[index]
    warm_up()
    return run_sweep_pack(cli_main, argv[1], rest, retry_diverged=retry)


if __name__ == "__main__":
    sys.exit(main())
