"""``optlaw train <overrides>``: compose the config, run one grid point, exit with its outcome."""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from optlaw.config import compose
from optlaw.entry.overrides import refuse_multirun, take_cfg_flag
from optlaw.entry.points import root_config, run_point
from optlaw.records import FINISHED
from optlaw.train.signals import Preempted

USAGE = """\
usage: optlaw train [key=value ...]

Train one grid point (model x token budget x optimizer) and write its run directory
(run.json, metrics.jsonl, config.yaml, routing.json, checkpoints/).

examples:
  optlaw train model=llama/1m optimizer=adamw budget.tokens=2000000
  optlaw train model=llama/3m optimizer=adamw budget.tokens_per_param=20 run_dir=/tmp/r1
  torchrun --nproc_per_node 2 -m optlaw train model=llama/1m budget.tokens=2000000

keys (defaults in configs/train.yaml; see docs/configuration.md):
  model=<family>/<size>      a preset under configs/model/
  optimizer=<name>           a config under configs/optimizer/
  data=<name>                a corpus under configs/data/
  budget.tokens=<n> | budget.tokens_per_param=<x>   exactly one; budget.param_basis=non_embedding|total
  batch.global_tokens, batch.micro_batch_size       accumulation is derived
  schedule.name=cosine|linear|wsd|constant, schedule.warmup_fraction | schedule.warmup_tokens
  run_dir=<path>             default runs/<run id>; rerunning the same command resumes
  init.from_checkpoint=<file>   start from another run's checkpoint (budget branching)
  task=<t>                   llm (default) or a proxy task (uses config task_<t>)
  --cfg job                  print the resolved config and exit; train nothing

A grid of points (Hydra's multirun, optimizer=adamw,muon) is a sweep: see `optlaw sweep --help`.

exit status: 0 done or diverged (see run.json status), 2 bad input,
75 preempted by SIGTERM/SIGUSR1, 130 interrupted by Ctrl-C (both: checkpoint written,
record left running; rerun to resume), 1 failed.
"""


def main(argv: list[str]) -> int:
    if any(a in {"-h", "--help", "help"} for a in argv):
        print(USAGE)
        return 0
    print_config, argv = take_cfg_flag(argv)
    refuse_multirun("train", argv)
    cfg = compose(root_config(argv), argv)
    if print_config:
        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        return 0
    try:
        record = run_point(cfg)
    except Preempted as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return exc.exit_code
    return 0 if record.status in FINISHED else 1
