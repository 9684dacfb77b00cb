"""Every shell command README.md shows is run, here or by the test REGISTRY names for it.

The commands are read from README.md itself (tests/_commands.py says how: every line of its
```bash blocks, every inline `code span` that is a command, such as `optlaw demo [--out DIR]`
or `OPTLAW_EXTRAS=peers bash scripts/setup.sh`) plus the `optimizer=generic ...` cell of the
optimizer table. REGISTRY maps each one to how it is exercised, and the first test fails
when the README gains, loses or changes a command, so the guide cannot drift away from the
tests: change the README, then the constant below that this file runs, then its REGISTRY
entry. tests/test_docs_commands.py does the same for docs/*.md.

The commands run as subprocesses of the installed `optlaw` (and `torchrun`, `python`) in a
temporary working directory. Where a README command would take minutes, overrides appended
after it shrink the work; each test says what it shrinks. Appending works because every
parser involved lets the last value win: Hydra applies `key=value` overrides in order
(checked: `budget.tokens=2000000 budget.tokens=8192` gives 8192, and a repeated group choice
such as `model=` also takes the last one), argparse keeps the last `--out` / `--bootstrap` /
`--module`, and `optlaw sweep` keeps the last `sweep_dir=`. So the README text is run
verbatim, followed by the shrinking overrides, and never edited in place, except that
placeholders the README writes in capitals or brackets (DIR, SWEEP_DIR, ENTITY/PROJECT[:GROUP],
<name>) are replaced by real values; each test says which.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from optlaw import machine, records

sys.path.insert(0, os.path.dirname(__file__))
from _commands import (  # noqa: E402  (tests/_commands.py: shared with tests/test_docs_commands.py)
    BIN, DOCS, PROXY_RF_SHRINK, QUICK_EVAL, README, REPO_ROOT, TINY_MODEL, cli_env, command_argv, guide_commands,
    normalise, only_run_dir, registry_problems, run_command, write_jsonl_corpus,
)
from _wandb_stand_in import StandInApi, StandInRun  # noqa: E402

# --------------------------------------------------------------------------------------
# The README commands this file runs (exactly as README.md prints them).

DEMO = "bash scripts/demo.sh"
TEST_SUITE = "bash scripts/test.sh"
GPU_VENV = "python3 -m venv .venv"
GPU_TORCH = ".venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu126"
SETUP = "bash scripts/setup.sh"
SETUP_PEERS = "OPTLAW_EXTRAS=peers bash scripts/setup.sh"
OPTLAW_HELP = ".venv/bin/optlaw --help"
DEMO_OUT = "optlaw demo [--out DIR]"
DEMO_CI = "optlaw demo --sweep demo_ci"
TRAIN_1M = "optlaw train model=llama/1m optimizer=adamw budget.tokens=2000000"
TRAIN_OLMO = "optlaw train model=olmo/3m optimizer=muon budget.tokens_per_param=20 run_dir=/tmp/r1"
TORCHRUN = "torchrun --standalone --nproc_per_node 2 -m optlaw train model=llama/1m budget.tokens=2000000"
TRAIN_HELP = "optlaw train --help"
TRAIN_CFG = "optlaw train model=llama/1m optimizer=muon budget.tokens=2000000 --cfg job"
LADDER = "python -m optlaw.models.ladder"
DATA = "optlaw data model=llama/20m data=text 'data.files=[corpus/*.jsonl]' data.tokenizer_vocab_size=8192"
TRAIN_TEXT = ("optlaw train model=llama/20m data=text 'data.files=[corpus/*.jsonl]' data.tokenizer_vocab_size=8192 "
              "budget.tokens_per_param=20")
GENERIC = "optimizer=generic optimizer.cls=torch_optimizer.Lamb optimizer.kwargs.lr=1e-3"
SWEEP_DRY = "optlaw sweep sweep=smoke sweep_dir=sweeps/smoke --dry-run"
SWEEP_LOCAL = "optlaw sweep sweep=smoke sweep_dir=sweeps/smoke launcher=local launcher.max_parallel=2"
SWEEP_SLURM = "optlaw sweep sweep=my_sweep sweep_dir=/scratch/my_sweep launcher=slurm launcher.partition=gpu"
SBATCH = "sbatch SWEEP_DIR/slurm/array-1.sbatch"
STATUS = "optlaw status sweeps/smoke"
TUNE_SMOKE = "optlaw sweep sweep=tune_smoke launcher.max_parallel=2"
TUNE_STATUS = "optlaw status sweeps/tune_smoke"
FIT_SMOKE = "optlaw fit --runs sweeps/smoke --law shared --holdout none --out fits/smoke"
FIT_AB = ("optlaw fit --runs sweep_a sweep_b --law compute --reference adamw --bootstrap 1000 --holdout largest "
          "--out fits/ab")
FIT_WANDB = "optlaw fit --wandb-runs my-entity/optlaw:my_sweep --law shared --out fits/from_wandb"
FIT_WANDB_RUNS = "optlaw fit --wandb-runs ENTITY/PROJECT[:GROUP] --out DIR"
FIT_WANDB_ONLINE = "optlaw fit --runs SWEEP_DIR --out DIR --wandb online"
FIT_CHINCHILLA = (
    'optlaw fit --csv ../shared/reference-data/epoch_chinchilla_svg_extracted_data.csv --column "N=Model Size" '
    '--column "flops=Training FLOP" --default-optimizer chinchilla --drop-highest-loss 5 --n-basis total '
    "--law chinchilla --holdout none --out fits/chinchilla")
FIT_MARIN = (
    "optlaw fit --csv ../shared/reference-data/marin_fantastic_optimizers_final_losses.csv "
    "--column optimizer=optimizer_canonical --column N=N_nonembed --column D=D_tokens --column loss=loss_c4_en "
    "--n-basis non_embedding --law compute --out fits/marin")
PROXY_RF = "optlaw proxy random_features --out DIR"
PROXY_QUADRATIC = "optlaw proxy quadratic --out DIR"
PROXY_SPECTRUM_INPUT = "optlaw proxy spectrum --input eig.npy"
PROXY_SPECTRUM_RUN = "optlaw proxy spectrum --run RUN_DIR --module NAME"
PROXY_POINT = "optlaw train task=quadratic proxy_optimizer=kron N=256 steps=256"
BENCH_ALL = ".venv/bin/python scripts/bench/run_all.py"
BENCH_HELP = ".venv/bin/python scripts/bench/bench_<name>.py --help"

SLURM_TEST = "tests/test_slurm_sweep.py::test_slurm_sweep_finishes_every_point_and_relaunch_submits_nothing"
SBATCH_TEST = "tests/test_slurm_sweep.py::test_sbatch_template_runs_the_manifest_points"
DEMO_TEST = "tests/test_demo.py::test_demo_runs_fits_reports_and_reuses_finished_points"
DEMO_CI_TEST = "tests/test_demo_criteria.py::test_reduced_demo_grid_meets_the_interval_and_identifiability_criteria"
DEMO_TIMING = "scripts/research/demo_timing.py optlaw-demo/sweep 1136"

# README command -> how it is exercised: a test in this file, `tests/<file>.py::<test>`, or
# "not runnable here: <reason>" (allowed only for the two commands in NOT_RUNNABLE_ALLOWED).
REGISTRY: dict[str, tuple[str, ...]] = {
    # demo.sh = setup.sh + `exec .venv/bin/optlaw demo`; test_demo.py runs `optlaw demo` on a one-minute sweep.
    DEMO: (DEMO_TEST, "test_ci_runs_the_readme_setup_scripts"),
    TEST_SUITE: ("test_ci_runs_the_readme_setup_scripts",),  # CI's .ci/run is exactly this command
    GPU_VENV: ("test_gpu_install_venv_step_creates_a_venv",),
    GPU_TORCH: ("not runnable here: downloads a CUDA build of torch from download.pytorch.org "
                "(no network and no GPU on this machine)",),
    SETUP: ("test_ci_runs_the_readme_setup_scripts",  # CI runs it through scripts/test.sh
            "test_setup_script_installs_optlaw_with_the_extras_it_is_given"),  # run here against a stand-in venv
    # The script run verbatim against a stand-in .venv (pip would need the package registry), and a
    # static check that pyproject.toml's `peers` extra is the two libraries the README names.
    SETUP_PEERS: ("test_setup_script_installs_optlaw_with_the_extras_it_is_given",),
    OPTLAW_HELP: ("test_optlaw_help_lists_every_subcommand_the_guide_uses",),
    # The sweep and its fits: test_demo.py (`optlaw demo --out DIR` on the demo_smoke sweep); DIR's default here.
    DEMO_OUT: (DEMO_TEST, "test_demo_out_defaults_to_optlaw_demo"),
    DEMO_CI: (DEMO_CI_TEST,),  # the reduced demo grid, run as printed with --out in a temporary folder
    DEMO_TIMING: ("tests/test_demo_timing.py::test_demo_timing_sums_the_records_training_times",),  # on stand-in records
    TRAIN_1M: ("test_train_llama_1m_writes_a_done_record_under_runs",),
    TRAIN_OLMO: ("test_train_olmo_3m_muon_into_a_given_run_dir",),
    TORCHRUN: ("test_torchrun_two_ranks_on_cpu",),
    TRAIN_HELP: ("test_train_help",),
    TRAIN_CFG: ("test_train_cfg_job_prints_the_config_it_would_train",
                "tests/test_cli.py::test_train_cfg_job_prints_the_resolved_config_and_trains_nothing"),
    LADDER: ("test_ladder_module_regenerates_the_model_presets",),
    DATA: ("test_text_corpus_data_then_train",),
    TRAIN_TEXT: ("test_text_corpus_data_then_train",),
    GENERIC: ("test_generic_optimizer_lamb_by_import_path",),
    SWEEP_DRY: ("test_smoke_sweep_dry_run_prints_the_plan",),
    SWEEP_LOCAL: ("test_smoke_sweep_local_launch_trains_every_point",),
    SWEEP_SLURM: ("not runnable here: needs a SLURM cluster with a GPU partition named gpu",
                  "test_readme_sweep_yaml_composes_and_plans",  # this exact line with --dry-run
                  SLURM_TEST),  # the SLURM launcher for real, on the single-node CPU cluster (launcher=slurm_cpu)
    # On the single-node SLURM cluster (skipped where none can start, required under CI=true): a dry run
    # writes the manifest of 2 points, then `sbatch --array=0-1%2 --cpus-per-task=1 --time=30
    # slurm/sweep_array.sbatch <that sweep dir>` (<n-1> -> 1, %32 -> %2, SWEEP_DIR -> the sweep dir; the
    # template's 8 CPUs per task shrunk to fit the 2-core node) and every point must end done.
    SBATCH: (SBATCH_TEST,),
    STATUS: ("test_status_prints_the_table",),
    TUNE_SMOKE: ("test_tune_smoke_tunes_in_rounds_and_status_shows_each_cell",),
    TUNE_STATUS: ("test_tune_smoke_tunes_in_rounds_and_status_shows_each_cell",),
    FIT_SMOKE: ("test_fit_smoke_sweep_shared_law",),
    FIT_AB: ("test_fit_two_sweep_dirs_compute_law",),
    FIT_WANDB: ("test_fit_wandb_runs_through_the_cli",
                "tests/test_fit_inputs.py::test_wandb_runs_fit_like_local_records"),
    FIT_WANDB_RUNS: ("test_fit_wandb_runs_with_and_without_a_group", "test_fit_wandb_runs_through_the_cli"),
    FIT_WANDB_ONLINE: ("test_fit_logs_to_wandb_online_in_the_sweeps_group",),
    FIT_CHINCHILLA: ("test_fit_chinchilla_reproduces_the_published_fit",),
    FIT_MARIN: ("test_fit_marin_optimizer_sweep_compute_law",),
    PROXY_RF: ("test_proxy_random_features",),
    PROXY_QUADRATIC: ("test_proxy_quadratic",),
    PROXY_SPECTRUM_INPUT: ("test_proxy_spectrum_from_eigenvalues",),
    PROXY_SPECTRUM_RUN: ("test_proxy_spectrum_of_a_trained_run",),
    PROXY_POINT: ("test_proxy_one_point_through_train",),
    # The full run takes ~10 minutes of both cores and rewrites docs/benchmarks.md: the runner is run
    # here on bench_fit alone, with bench_fit shrunk to seconds.
    BENCH_ALL: ("test_bench_run_all_on_a_shrunk_bench_fit",),
    BENCH_HELP: ("test_bench_scripts_print_their_help",),
}
NOT_RUNNABLE_ALLOWED = {GPU_TORCH, SWEEP_SLURM}


# --------------------------------------------------------------------------------------
# Reading the commands out of README.md


def _section(text: str, heading: str) -> str:
    """The body of the section whose heading line starts with ``heading`` (without that line)."""
    match = re.search(rf"^{re.escape(heading)}[^\n]*\n(.*?)(?=^#{{2,3}} |\Z)", text, re.M | re.S)
    assert match, f"README.md has no section {heading!r}"
    return match.group(1)


def readme_commands(text: str | None = None) -> list[str]:
    text = README.read_text() if text is None else text
    commands = guide_commands(text)
    commands.extend(normalise(code) for code in re.findall(r"`(optimizer=generic [^`]+)`", text))
    return commands


def readme_sweep_yaml() -> str:
    blocks = re.findall(r"^```yaml\n(.*?)^```", _section(README.read_text(), "### Writing a sweep"), re.M | re.S)
    assert len(blocks) == 1, "the 'Writing a sweep' section should hold one ```yaml block"
    return blocks[0]


def test_extraction_joins_continuations_drops_comments_and_splits_alternatives():
    text = ("```bash\nfoo a=1   # note\n# whole-line comment\nbar --x \"q # not a comment\" \\\n  --y 2\n```\n"
            "### Proxy tasks\n\n- `optlaw proxy spectrum --input e.npy | --run R --module M`: words\n## Next\n")
    assert readme_commands(text) == ["foo a=1", 'bar --x "q # not a comment" --y 2',
                                     "optlaw proxy spectrum --input e.npy", "optlaw proxy spectrum --run R --module M"]


def test_extraction_finds_inline_commands_and_skips_names():
    text = ("Run `optlaw demo [--out DIR]` or `OPTLAW_EXTRAS=peers bash scripts/setup.sh`; `sbatch --array=0-3\n"
            "job.sbatch DIR` spans a line. Names are not commands: `optlaw fit`, `torchrun`, `.venv/bin/optlaw`,\n"
            "`scripts/test.sh`, `OPTLAW_EXTRA_CONFIGS=/path`, `optlaw.fit`, `python`.\n"
            "```bash\n# `optlaw inside a comment`\noptlaw fit --csv x.csv --out o\n```\n")
    assert readme_commands(text) == ["optlaw fit --csv x.csv --out o", "optlaw demo [--out DIR]",
                                     "OPTLAW_EXTRAS=peers bash scripts/setup.sh", "sbatch --array=0-3 job.sbatch DIR"]


def test_every_readme_command_is_in_the_registry():
    problems = registry_problems(REGISTRY, readme_commands(), NOT_RUNNABLE_ALLOWED, globals())
    assert not problems, "README.md vs REGISTRY in tests/test_readme_commands.py:\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------
# Running them


# --- Quick start and installation -------------------------------------------------------


def test_ci_runs_the_readme_setup_scripts():
    """`bash scripts/test.sh` is CI (.ci/run); it runs `bash scripts/setup.sh`, and demo.sh is setup + `optlaw demo`.

    Running them here would pip-install into the repository's own .venv (pip upgrades itself
    and builds optlaw from the network), so the chain is checked instead: CI executes it from
    a clean clone on every run, tests/test_demo.py runs `optlaw demo` end to end, and the test
    below runs setup.sh against a stand-in venv.
    """
    def commands(path: str) -> list[str]:
        lines = (REPO_ROOT / path).read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    assert "bash scripts/test.sh" in commands(".ci/run")
    test_sh = commands("scripts/test.sh")
    assert "OPTLAW_EXTRAS=test bash scripts/setup.sh" in test_sh
    assert test_sh[-1].startswith("exec .venv/bin/python -m pytest")
    assert commands("scripts/demo.sh")[-2:] == ["bash scripts/setup.sh", 'exec .venv/bin/optlaw demo "$@"']
    setup = "\n".join(commands("scripts/setup.sh"))
    assert '"$PYTHON" -m venv .venv' in setup and "import torch" in setup  # keeps an installed (CUDA) torch
    for script in (".ci/run", "scripts/test.sh", "scripts/demo.sh", "scripts/setup.sh"):
        syntax = subprocess.run(["bash", "-n", str(REPO_ROOT / script)], capture_output=True, text=True)
        assert syntax.returncode == 0, (script, syntax.stderr)


def test_gpu_install_venv_step_creates_a_venv(tmp_path):
    python3 = shutil.which("python3")
    if python3 is None:
        pytest.fail("python3 is not on PATH; the README's GPU install (and scripts/setup.sh) need it")
    run_command(GPU_VENV, tmp_path)
    version = subprocess.run([str(tmp_path / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                             capture_output=True, text=True, check=True)
    assert Path(version.stdout.strip()).resolve() == (tmp_path / ".venv").resolve()


FAKE_VENV_PYTHON = """#!/usr/bin/env bash
echo "python $*" >>"$SETUP_LOG"
case "$*" in
  *"import optlaw, torch"*) echo "optlaw ready in .venv (torch 0.0+stand-in)" ;;
  *"import torch"*) [ "$HAS_TORCH" = 1 ] ;;
esac
"""
FAKE_VENV_PIP = """#!/usr/bin/env bash
echo "pip $*" >>"$SETUP_LOG"
"""


def test_setup_script_installs_optlaw_with_the_extras_it_is_given(tmp_path):
    """`OPTLAW_EXTRAS=peers bash scripts/setup.sh` and `bash scripts/setup.sh`, run verbatim.

    For real they pip-install into the repository's .venv from the package registry, so they run
    here on a copy of the script in an empty folder whose .venv/bin/python and pip only log their
    arguments: what the script asks pip to install is what is checked.
    """
    def run_setup(command: str, has_torch: bool) -> list[str]:
        root = tmp_path / ("with_torch" if has_torch else "without_torch")
        (root / "scripts").mkdir(parents=True)
        shutil.copy(REPO_ROOT / "scripts" / "setup.sh", root / "scripts" / "setup.sh")
        for name, text in (("python", FAKE_VENV_PYTHON), ("pip", FAKE_VENV_PIP)):
            path = root / ".venv" / "bin" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o755)
        env = {k: v for k, v in cli_env(root).items() if not k.startswith(("OPTLAW_EXTRAS", "OPTLAW_TORCH"))}
        env.update(SETUP_LOG=str(root / "log"), HAS_TORCH="1" if has_torch else "0")
        proc = run_command(command, root, env=env)
        assert proc.stdout.startswith("optlaw ready in .venv")
        return [line for line in (root / "log").read_text().splitlines() if line.startswith("pip ")]

    # A CUDA torch already in .venv (the README's GPU install) is kept; the extra is installed with optlaw.
    assert run_setup(SETUP_PEERS, has_torch=True) == ["pip install -q -e .[peers]"]
    assert run_setup(SETUP, has_torch=False) == ["pip install -q torch==2.13.0", "pip install -q -e ."]
    # The `peers` extra holds the libraries the README names.
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [re.split(r"[<>=!~ ]", req)[0] for req in extras["peers"]] == ["torch-optimizer", "heavyball"]
    assert "optional peer optimizer libraries (torch-optimizer, heavyball)" in normalise(README.read_text())


def test_optlaw_help_lists_every_subcommand_the_guide_uses(tmp_path):
    out = run_command(OPTLAW_HELP, tmp_path).stdout  # .venv/bin/ -> the venv running the tests
    assert out.startswith("usage: optlaw <command> [args...]")
    listed = set(re.findall(r"^  (\w+) ", out, re.M))
    guide = [README.read_text()] + [p.read_text() for p in sorted(DOCS.glob("*.md"))]
    used = {c.split()[1] for text in guide for c in guide_commands(text) if c.split()[0].endswith("optlaw")}
    used.discard("--help")
    assert used and used <= listed, used - listed


def test_demo_out_defaults_to_optlaw_demo():
    # `optlaw demo [--out DIR]` itself (a real sweep, fits and report) is run by tests/test_demo.py
    # with --out in a temporary folder; here: without --out, DIR is ./optlaw-demo as the README says.
    from optlaw.entry.demo import build_parser

    assert build_parser().parse_args([]).out == "optlaw-demo"


# --- Training one grid point ------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_1m_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The README's first train command. Shrunk: budget.tokens 2,000,000 -> 8192 (2 steps of 4096)."""
    root = tmp_path_factory.mktemp("train_1m")
    proc = run_command(TRAIN_1M, root, ["budget.tokens=8192", *QUICK_EVAL])
    return only_run_dir(root), proc


def test_train_llama_1m_writes_a_done_record_under_runs(llama_1m_run):
    run_dir, proc = llama_1m_run
    record = records.read_record(run_dir)
    assert record.status == "done" and run_dir.name == record.run_id  # -> runs/<run id>/
    assert (record.family, record.size, record.optimizer) == ("llama", "1m", "adamw")
    assert record.D == record.tokens_trained == 8192 and record.steps_done == 2
    assert np.isfinite(record.final_val_loss) and record.final_val_loss < np.log(1024)  # it learned
    for name in ("metrics.jsonl", "config.yaml", "routing.json"):
        assert (run_dir / name).exists(), name
    assert f"{record.run_id}: done" in proc.stdout


def test_train_olmo_3m_muon_into_a_given_run_dir(tmp_path):
    # Shrunk: budget.tokens_per_param 20 -> 0.003 (9,352 tokens requested: 2 steps of 4096), and
    # run_dir=/tmp/r1 -> <tmp_path>/r1 so the test writes only under its own folder.
    run_dir = tmp_path / "r1"
    run_command(TRAIN_OLMO, tmp_path, ["budget.tokens_per_param=0.003", f"run_dir={run_dir}", *QUICK_EVAL])
    record = records.read_record(run_dir)
    assert record.status == "done"
    assert (record.family, record.size, record.optimizer) == ("olmo", "3m", "muon")
    assert record.D_requested == round(0.003 * record.N_non_embedding)
    assert record.D == 8192 and record.step_cost_ratio > 0
    groups = {row["group"]: row["optimizer"] for row in json.loads((run_dir / "routing.json").read_text())}
    assert groups["hidden_matrix"] == "muon" and groups["embedding"] == "adamw"
    assert not (tmp_path / "runs").exists()


def test_torchrun_two_ranks_on_cpu(tmp_path):
    # Real 2-process DDP over gloo. Shrunk: budget.tokens 2,000,000 -> 8192 (2 steps of 4096 = 16 x 128 per rank).
    proc = run_command(TORCHRUN, tmp_path, ["budget.tokens=8192", *QUICK_EVAL])
    record = records.read_record(only_run_dir(tmp_path))
    assert record.status == "done" and record.tokens_trained == 8192
    assert record.budget["world_size"] == 2 and record.budget["grad_accum_steps"] == 1
    assert "x 2 ranks" in proc.stdout


def test_train_help(tmp_path):
    out = run_command(TRAIN_HELP, tmp_path).stdout
    assert out.startswith("usage: optlaw train") and "budget.tokens" in out
    assert not (tmp_path / "runs").exists()


def test_train_cfg_job_prints_the_config_it_would_train(tmp_path):
    import yaml

    from optlaw.config import compose, to_plain

    printed = yaml.safe_load(run_command(TRAIN_CFG, tmp_path).stdout)
    overrides = TRAIN_CFG.split()[2:-2]
    assert printed == to_plain(compose("train", overrides))
    assert printed["optimizer"]["name"] == "muon" and printed["budget"]["tokens"] == 2000000
    assert not (tmp_path / "runs").exists()


# --- Model presets ----------------------------------------------------------------------


def test_ladder_module_regenerates_the_model_presets(tmp_path):
    # Appended: the module's optional target folder, so the test does not rewrite the repository's configs/.
    target = tmp_path / "configs"
    proc = run_command(LADDER, tmp_path, [str(target)])
    shipped = REPO_ROOT / "configs"
    written = sorted(p.relative_to(target) for p in target.rglob("*.yaml"))
    assert written == sorted(p.relative_to(shipped) for p in (shipped / "model").rglob("*.yaml"))
    for path in written:
        assert (target / path).read_text() == (shipped / path).read_text(), path
    assert len(proc.stdout.splitlines()) == len(written)  # one line per file written


# --- Data -------------------------------------------------------------------------------


def test_text_corpus_data_then_train(tmp_path):
    write_jsonl_corpus(tmp_path / "corpus")
    # Both commands: a held-out split of 8192 tokens instead of 1,048,576 (this corpus is ~85k tokens);
    # the split rule is part of the cache key, so both commands must give the same value.
    split = ["data.val_tokens=8192"]
    built = run_command(DATA, tmp_path, split)
    summary = json.loads(built.stdout)
    entry = Path(summary["directory"])
    assert entry.parent == tmp_path / "cache" / "data" / "tokens"  # $OPTLAW_CACHE_DIR/data
    for name in ("meta.json", "tokenizer.json", "val.bin", "train_000.bin"):
        assert (entry / name).stat().st_size > 0, name
    assert summary["documents"] == 1200 and summary["val_tokens"] >= 8192 and summary["dtype"] == "uint16"
    assert 1024 < summary["vocab_size"] <= 8192  # trained BPE; more than llama/1m's 1024, hence model=llama/20m
    meta_mtime = (entry / "meta.json").stat().st_mtime_ns

    # Shrunk: llama/20m's shape -> TINY_MODEL (vocabulary 50304 kept), budget.tokens_per_param 20 -> 0.1
    # (0.1 x 41,152 non-embedding parameters: 4 steps of 1024 tokens).
    shrink = [*TINY_MODEL, "budget.tokens_per_param=0.1", "batch.global_tokens=1024", "batch.micro_batch_size=8",
              *QUICK_EVAL]
    trained = run_command(TRAIN_TEXT, tmp_path, split + shrink)
    record = records.read_record(only_run_dir(tmp_path))
    assert record.status == "done" and record.tokens_trained == record.D == 4096
    assert record.config["data"]["name"] == "text" and record.entropy_floor_nats is None
    assert (record.family, record.size) == ("llama", "20m")
    # Training reused the cache entry `optlaw data` built: no second entry, nothing tokenized again.
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]
    assert (entry / "meta.json").stat().st_mtime_ns == meta_mtime
    assert "tokenizing" in built.stderr and "tokenizing" not in trained.stderr


# --- Optimizers -------------------------------------------------------------------------


def test_generic_optimizer_lamb_by_import_path(tmp_path):
    # The table cell's overrides on the README's first train command, shrunk to budget.tokens=8192.
    run_command(f"{TRAIN_1M} {GENERIC}", tmp_path, ["budget.tokens=8192", *QUICK_EVAL])
    run_dir = only_run_dir(tmp_path)
    record = records.read_record(run_dir)
    assert record.status == "done" and record.optimizer == "generic-torch_optimizer.Lamb"  # named by class
    assert record.hyperparameters["hyperparameters"]["generic"] == {
        "cls": "torch_optimizer.Lamb", "kwargs": {"lr": 1e-3, "weight_decay": None}}
    assert {row["optimizer"] for row in json.loads((run_dir / "routing.json").read_text())} == {"generic"}


# --- Sweeps, status, fits on sweep records ------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """The README's dry run, local launch and status of the smoke sweep, in order, unshrunk.

    configs/sweep/smoke.yaml is 2 points of llama/1m (8 and 16 steps): ~25 s on 2 cores.
    """
    root = tmp_path_factory.mktemp("smoke")
    out = {"root": root}
    out["dry"] = run_command(SWEEP_DRY, root).stdout
    out["launch"] = run_command(SWEEP_LOCAL, root).stdout
    out["status"] = run_command(STATUS, root).stdout
    return out


@pytest.mark.slow
def test_smoke_sweep_dry_run_prints_the_plan(smoke):
    plan = smoke["dry"]
    assert plan.startswith("sweep smoke: 2 points in sweeps/smoke (manifest.json written)")
    assert "to run now: 2 points" in plan and "GPU-hours" in plan
    manifest = json.loads((smoke["root"] / "sweeps" / "smoke" / "manifest.json").read_text())
    assert [p["tokens"] for p in manifest["points"]] == [16384, 32768]
    for point in manifest["points"]:
        assert f"{point['run_id']}" in plan


@pytest.mark.slow
def test_smoke_sweep_local_launch_trains_every_point(smoke):
    sweep_dir = smoke["root"] / "sweeps" / "smoke"
    points = json.loads((sweep_dir / "manifest.json").read_text())["points"]
    for point in points:
        record = records.read_record(sweep_dir / point["run_dir"])
        assert record.status == "done" and record.sweep == "smoke"
        assert record.tokens_trained == point["tokens"]
        assert f"start {point['run_id']}" in smoke["launch"]
    assert smoke["launch"].rstrip().endswith("2 points: 2 done, 0 diverged, 0 failed, 0 running, 0 pending")


@pytest.mark.slow
def test_status_prints_the_table(smoke):
    lines = smoke["status"].strip().splitlines()
    assert lines[0].split()[:5] == ["run_id", "state", "final_loss", "tokens", "wall_s"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    sweep_dir = smoke["root"] / "sweeps" / "smoke"
    for point in json.loads((sweep_dir / "manifest.json").read_text())["points"]:
        row = rows[point["run_id"]]
        record = records.read_record(sweep_dir / point["run_dir"])
        assert row[1] == "done" and float(row[2]) == pytest.approx(record.final_val_loss, abs=1e-4)
    assert lines[-1] == "2 points: 2 done, 0 diverged, 0 failed, 0 running, 0 pending"


@pytest.mark.slow
def test_tune_smoke_tunes_in_rounds_and_status_shows_each_cell(tmp_path):
    # configs/sweep/tune_smoke.yaml in full is 8 cells, ~53 points. Shrunk by appended sweep overrides to
    # one cell (llama/100k, adamw, 8192 tokens) starting at lr_mult 2 instead of 0.5 (its best is about 8):
    # round 1 tries 1, 2, 4, then the bracket extends, a few points in all.
    shrink = ["sweep.models=[llama/100k]", "sweep.optimizers=[adamw]", "sweep.tokens=[8192]",
              "sweep.tuning.hyperparameters=[{key:optimizer.lr_mult,start:2.0}]"]
    out = run_command(TUNE_SMOKE, tmp_path, shrink, timeout=1200).stdout
    assert out.startswith("sweep tune_smoke: 3 points in sweeps/tune_smoke (manifest.json written)")
    assert "tuning: 1 of 1 cells finished" in out or "tuning: 0 of 1 cells finished" in out
    assert "tuning: 1 cells (1 resolved); complete" in out
    status = run_command(TUNE_STATUS, tmp_path).stdout
    row = next(line for line in status.splitlines() if line.strip().startswith("llama/100k adamw tokens=8192"))
    assert "tuned" in row and "lr_mult [" in row and "lr_mult=" in row and row.rstrip().endswith("resolved")
    manifest = json.loads((tmp_path / "sweeps" / "tune_smoke" / "manifest.json").read_text())
    for point in manifest["points"]:
        record = records.read_record(tmp_path / "sweeps" / "tune_smoke" / point["run_dir"])
        assert record.status == "done" and record.tuning["source"] == "tuned"
        assert record.tuning["cell"] == "llama/100k adamw tokens=8192"


@pytest.mark.slow
def test_fit_smoke_sweep_shared_law(smoke):
    root = smoke["root"]
    proc = run_command(FIT_SMOKE, root)
    doc = json.loads((root / "fits" / "smoke" / "fit.json").read_text())
    assert doc["law"] == "shared" and doc["reference"] == "adamw" and doc["n_points"] == 2
    assert doc["holdout_spec"] in (None, "none") and doc["holdout"] in (None, [])
    assert doc["shared"] is not None and set(doc["optimizers"]) == {"adamw"}
    assert (root / "fits" / "smoke" / "report.md").exists()
    assert proc.stdout.startswith("law=shared ")


# A second tiny sweep beside the smoke sweep, so the README's two-directory compute fit has two
# optimizers and three model sizes: llama/100k and llama/250k x adamw and muon x 8192 and 16384
# tokens (8 points, ~30 s). The smoke sweep's llama/1m points are the largest N, held out.
SWEEP_B = """\
name: sweep_b
task: llm
models: [llama/100k, llama/250k]
optimizers: [adamw, muon]
seeds: [0]
tokens_per_param: null
tokens: [8192, 16384]
extra_axes: {}
optimizer_axes: {}
fixed: {device: cpu, cpu_threads: 1, batch.global_tokens: 2048, batch.micro_batch_size: 8, eval.tokens: 8192,
        eval.fractions: [], step_cost.repeats: 2, progress: false}
branching: {enabled: false, decay_fraction: 0.2, warmup_tokens: null}
"""


@pytest.fixture(scope="module")
def two_sweeps(smoke) -> Path:
    """``sweep_a`` (the smoke sweep) and ``sweep_b`` side by side in the smoke sweep's folder."""
    root = smoke["root"]
    configs = root / "user_configs"
    (configs / "sweep").mkdir(parents=True)
    (configs / "sweep" / "sweep_b.yaml").write_text(SWEEP_B)
    env = cli_env(root, OPTLAW_EXTRA_CONFIGS=str(configs))
    run_command("optlaw sweep sweep=sweep_b sweep_dir=sweep_b launcher.max_parallel=2", root, env=env)
    (root / "sweep_a").symlink_to(root / "sweeps" / "smoke", target_is_directory=True)
    return root


@pytest.mark.slow
def test_fit_two_sweep_dirs_compute_law(two_sweeps):
    root = two_sweeps
    run_command(FIT_AB, root)
    doc = json.loads((root / "fits" / "ab" / "fit.json").read_text())
    assert doc["law"] == "compute" and doc["reference"] == "adamw" and doc["bootstrap_replicates"] == 1000
    assert doc["n_points"] == 10 and set(doc["optimizers"]) == {"adamw", "muon"}
    muon = doc["optimizers"]["muon"]
    assert muon["compute_multiplier"] > 0 and muon["compute_multiplier_ci"] is not None
    assert all(o["cost_per_ND"] > 0 for o in doc["optimizers"].values())  # FLOPs x measured step cost
    held_out = {(c["optimizer"], c["N"]) for c in doc["holdout"]}
    assert held_out == {("adamw", 907360)}  # llama/1m, the largest N: the smoke sweep's points
    assert set(doc["compute"]["allocation"]) == {"adamw", "muon"}
    assert (root / "fits" / "ab" / "report.md").exists() and (root / "fits" / "ab" / "frontier.png").exists()


def _wandb_api(two_sweeps: Path, other_loss: float) -> StandInApi:
    """The real sweep records as W&B summaries in group my_sweep, plus one run of another group."""
    found = [records.read_record(p.parent) for p in sorted(two_sweeps.glob("sweep_[ab]/runs/*/run.json"))]
    runs = [StandInRun({**rec.to_json(), "sweep": "my_sweep"}) for rec in found]
    runs.append(StandInRun({**found[0].to_json(), "run_id": "elsewhere", "sweep": "other", "final_val_loss": other_loss}))
    return StandInApi(runs)


@pytest.mark.slow
def test_fit_wandb_runs_through_the_cli(two_sweeps, tmp_path, monkeypatch, capsys):
    import wandb

    from optlaw.entry import cli
    from optlaw.fit import fit_shared, load_runs

    api = _wandb_api(two_sweeps, other_loss=99.0)
    monkeypatch.setattr(wandb, "Api", lambda *args, **kwargs: api)
    monkeypatch.chdir(tmp_path)
    # In-process, so the stand-in replaces wandb.Api. Shrunk: 100 bootstrap replicates, not 1000.
    assert cli.main(shlex.split(FIT_WANDB)[1:] + ["--bootstrap", "100"]) == 0
    capsys.readouterr()
    assert api.calls == [("my-entity/optlaw", {"group": "my_sweep"})]
    doc = json.loads((tmp_path / "fits" / "from_wandb" / "fit.json").read_text())
    assert doc["law"] == "shared" and doc["n_points"] == 10 and doc["source"] == "wandb:my-entity/optlaw:my_sweep"
    # The same records read from disk give the same shared law.
    local = fit_shared(load_runs([two_sweeps / "sweep_a", two_sweeps / "sweep_b"]))
    assert doc["shared"]["alpha"] == pytest.approx(local.params["alpha"], rel=1e-6)


@pytest.mark.slow
def test_fit_wandb_runs_with_and_without_a_group(two_sweeps, tmp_path, monkeypatch, capsys):
    import wandb

    from optlaw.entry import cli

    monkeypatch.chdir(tmp_path)
    # ENTITY/PROJECT[:GROUP] -> my-entity/optlaw (every run of the project) and my-entity/optlaw:my_sweep
    # (one sweep's runs); DIR -> a folder per form. In-process, so a stand-in replaces wandb.Api.
    # Shrunk: 100 bootstrap replicates, not 1000.
    forms = (("my-entity/optlaw", 11, None), ("my-entity/optlaw:my_sweep", 10, {"group": "my_sweep"}))
    for path, n_points, filters in forms:
        # The other group's run: the first record again, 0.01 nats worse (a second seed, say).
        api = _wandb_api(two_sweeps, other_loss=records.read_record(
            sorted(two_sweeps.glob("sweep_[ab]/runs/*/run.json"))[0].parent).final_val_loss + 0.01)
        monkeypatch.setattr(wandb, "Api", lambda *args, **kwargs: api)
        out = f"fit_{n_points}"
        command = FIT_WANDB_RUNS.replace("ENTITY/PROJECT[:GROUP]", path).replace("DIR", out)
        assert cli.main(shlex.split(command)[1:] + ["--bootstrap", "100"]) == 0
        capsys.readouterr()
        assert api.calls == [("my-entity/optlaw", filters)]
        doc = json.loads((tmp_path / out / "fit.json").read_text())
        assert doc["n_points"] == n_points and doc["source"] == f"wandb:{path}" and doc["law"] == "shared"


@pytest.mark.slow
def test_fit_logs_to_wandb_online_in_the_sweeps_group(two_sweeps, monkeypatch, capsys):
    import wandb

    from optlaw.entry import cli

    requested = []
    offline_init = wandb.init

    def init(**kwargs):  # no network here: the run asked for online is written offline instead
        requested.append(kwargs)
        return offline_init(**{**kwargs, "mode": "offline"})

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.chdir(two_sweeps)
    # SWEEP_DIR -> sweep_b (two model sizes, so the default --holdout largest leaves data to fit),
    # DIR -> fits/online. Shrunk: 50 bootstrap replicates, not 1000.
    command = FIT_WANDB_ONLINE.replace("SWEEP_DIR", "sweep_b").replace("DIR", "fits/online")
    assert cli.main(shlex.split(command)[1:] + ["--bootstrap", "50"]) == 0
    capsys.readouterr()
    assert [(k["mode"], k["group"], k["job_type"]) for k in requested] == [("online", "sweep_b", "fit")]
    run_dirs = list(Path(os.environ["WANDB_DIR"]).rglob("offline-run-*"))
    assert len(run_dirs) == 1 and (run_dirs[0] / "files" / "report.md").exists()
    assert list((run_dirs[0] / "files").rglob("*.png"))  # the plots, as W&B images


def test_readme_sweep_yaml_composes_and_plans(tmp_path):
    configs = tmp_path / "configs"
    (configs / "sweep").mkdir(parents=True)
    (configs / "sweep" / "my_sweep.yaml").write_text(readme_sweep_yaml())
    env = cli_env(tmp_path, OPTLAW_EXTRA_CONFIGS=str(configs))
    # The README's SLURM line on that file, planned only: `--dry-run` appended and sweep_dir=/scratch/my_sweep
    # -> my_sweep in tmp_path. It composes every point (as `optlaw train` would) with launcher=slurm and
    # the GPU partition, and prints the plan with GPU-hours at the slurm launcher's throughput. Submitting
    # needs a GPU partition; tests/test_slurm_sweep.py submits to a real (CPU) SLURM cluster.
    plan = run_command(SWEEP_SLURM, tmp_path, ["sweep_dir=my_sweep", "--dry-run"], env=env).stdout
    # 3 models x 4 budgets x (adamw + soap + muon at 3 LR multipliers) = 60 points.
    assert plan.startswith("sweep my_sweep: 60 points in my_sweep (manifest.json written)")
    assert "to run now: 60 points" in plan and "GPU-hours at 1.25e+14 FLOP/s" in plan
    manifest = json.loads((tmp_path / "my_sweep" / "manifest.json").read_text())
    assert {p["run_id"].split("-")[1] for p in manifest["points"]} == {"20m", "60m", "150m"}
    assert sum("lr_mult=" in line for line in plan.splitlines()) == 36
    assert manifest["definition"]["fixed"] == {"wandb.mode": "online", "batch.global_tokens": 262144}


# --- Fits on published data (run from the repository root so ../shared/reference-data resolves) ---


def _repo_untouched(before: set[str]) -> None:
    assert {p.name for p in REPO_ROOT.iterdir()} == before, "a README command wrote into the repository"


def test_fit_chinchilla_reproduces_the_published_fit(reference_data, tmp_path):
    before = {p.name for p in REPO_ROOT.iterdir()}
    out = tmp_path / "chinchilla"
    proc = run_command(FIT_CHINCHILLA, REPO_ROOT, ["--out", str(out)], env=cli_env(tmp_path))  # --out -> tmp
    _repo_untouched(before)
    fit = json.loads((out / "fit.json").read_text())["separate"]["chinchilla"]
    # Published (Epoch AI's replication of Hoffmann et al.): E=1.8172, A=477.84, B=2143.86, alpha=0.3473, beta=0.3672.
    assert float(f"{fit['alpha']:.3g}") == 0.347
    assert float(f"{fit['beta']:.3g}") == 0.367
    assert fit["E"] == pytest.approx(1.8172, abs=5e-4) and fit["A"] == pytest.approx(477.84, rel=1e-3)
    assert fit["B"] == pytest.approx(2143.86, rel=1e-3)
    assert "separate chinchilla" in proc.stdout and (out / "report.md").exists()


def test_fit_marin_optimizer_sweep_compute_law(reference_data, tmp_path):
    before = {p.name for p in REPO_ROOT.iterdir()}
    out = tmp_path / "marin"
    # --out -> tmp; shrunk: 200 bootstrap replicates instead of the default 1000 (23 s -> 10 s here).
    run_command(FIT_MARIN, REPO_ROOT, ["--out", str(out), "--bootstrap", "200"], env=cli_env(tmp_path))
    _repo_untouched(before)
    doc = json.loads((out / "fit.json").read_text())
    assert doc["law"] == "compute" and doc["n_points"] == 150 and len(doc["optimizers"]) == 11
    assert doc["n_basis"] == "non_embedding" and doc["bootstrap_replicates"] == 200
    assert all(o["compute_multiplier"] > 0 for o in doc["optimizers"].values())
    assert (out / "report.md").exists() and (out / "frontier.png").exists()


# --- Proxy tasks ------------------------------------------------------------------------


def test_proxy_random_features(tmp_path):
    # Shrunk from the full study (~4 min): see PROXY_RF_SHRINK in tests/_commands.py.
    proc = run_command(PROXY_RF, tmp_path, PROXY_RF_SHRINK)
    out = tmp_path / "DIR"
    alpha = json.loads((out / "alpha.json").read_text())["alpha"]
    assert set(alpha) == {"gd", "diag", "kron", "sign", "ngd"} and set(alpha["gd"]) == {"1.0", "1.5"}
    assert alpha["ngd"]["1.0"]["alpha"] > alpha["gd"]["1.0"]["alpha"]
    for name in ("report.md", "points.csv", "loss_vs_N.png", "alpha_vs_s.png"):
        assert (out / name).stat().st_size > 0, name
    assert proc.stdout.startswith("alpha (95% interval)") and "wrote DIR/report.md" in proc.stdout


def test_proxy_quadratic(tmp_path):
    # Shrunk (as tests/test_proxy_point.py): gd, kron, ngd; N 16-256; D 4-1024; feature_dim 2^16;
    # the damped regime only; no bootstrap; 5 timing repeats.
    shrink = ["optimizers=[gd,kron,ngd]", "N_values=[16,32,64,128,256]", "D_values=[4,16,64,256,1024]",
              "feature_dim=65536", "bootstrap=0", "timing_repeats=5", "progress=false",
              "regimes=[{name:damped,damping:0.1}]"]
    proc = run_command(PROXY_QUADRATIC, tmp_path, shrink)
    out = tmp_path / "DIR"
    doc = json.loads((out / "quadratic.json").read_text())
    assert doc["setting"]["s"] == 1.5 and set(doc["regimes"]) == {"damped"}
    assert len(list((out / "runs" / "damped").rglob("run.json"))) == 3 * 5 * 5
    assert (out / "report.md").exists() and (out / "quadratic_loss_vs_D.png").stat().st_size > 0
    assert "wrote DIR/report.md" in proc.stdout


def test_proxy_spectrum_from_eigenvalues(tmp_path):
    np.save(tmp_path / "eig.npy", np.arange(1, 401, dtype=float) ** -1.5)
    out = run_command(PROXY_SPECTRUM_INPUT, tmp_path).stdout
    assert out.startswith("s_hat = 1.500")
    shifts = dict(re.findall(r"^  (kron|sign|ngd)\s+theory ([+-][\d.]+)", out, re.M))
    assert set(shifts) == {"kron", "sign", "ngd"} and float(shifts["ngd"]) > 0


def test_proxy_spectrum_of_a_trained_run(llama_1m_run, tmp_path):
    # RUN_DIR is a folder of that name (a link to the README's llama/1m run); NAME is replaced by
    # appending a real module, --module model.layers.1.mlp.down_proj (argparse keeps the last).
    run_dir, _ = llama_1m_run
    (tmp_path / "RUN_DIR").symlink_to(run_dir, target_is_directory=True)
    out = run_command(PROXY_SPECTRUM_RUN, tmp_path, ["--module", "model.layers.1.mlp.down_proj"]).stdout
    s_hat = float(re.match(r"s_hat = ([\d.]+) \(ranks \d+-\d+ of 416,", out).group(1))  # ffn_hidden 416 inputs
    assert 0 < s_hat < 5 and "ngd   theory" in out


def test_proxy_one_point_through_train(tmp_path):
    run_command(PROXY_POINT, tmp_path)
    record = records.read_record(only_run_dir(tmp_path))
    assert record.status == "done" and record.task == "quadratic" and record.optimizer == "kron"
    assert record.N == 256 and record.D == record.tokens_trained == 256  # D counts steps here
    assert record.final_val_loss == pytest.approx(sum(record.loss_parts.values()))


# --- Benchmarks -------------------------------------------------------------------------


def test_bench_run_all_on_a_shrunk_bench_fit(tmp_path, monkeypatch, capsys):
    # The runner as the README gives it runs all four benchmarks in full (~10 minutes of both cores)
    # and rewrites docs/benchmarks.md. Shrunk: in-process, so its per-script arguments can be set, it
    # runs bench_fit alone (`--only bench_fit`), timing 2 of Hoffmann's 4,500 starts (scaled) with 20
    # bootstrap replicates, and writes to tmp_path (`--out`).
    argv, _ = command_argv(BENCH_ALL, ["--only", "bench_fit", "--out", str(tmp_path / "benchmarks.md")])
    assert argv[0] == str(BIN / "python")
    spec = importlib.util.spec_from_file_location("run_all", REPO_ROOT / argv[1])
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    monkeypatch.setattr(run_all, "DEFAULT_ARGS", {"bench_fit.py": ["--hoffmann-starts", "2", "--bootstrap", "20"]})
    monkeypatch.setattr(sys, "argv", argv[1:])
    assert run_all.main() == 0
    capsys.readouterr()
    text = (tmp_path / "benchmarks.md").read_text()
    assert re.search(r"^### bench_fit\.py \(ok, \d+ s\)$", text, re.M), text
    assert "optlaw global solve + 20 honest bootstrap replicates" in text and "speed ratio (Hoffmann / optlaw)" in text
    assert "median of 2 fits interleaved with Hoffmann" in text and "in 2 interleaved slices" in text
    assert "## bench_train.py" not in text
    # Each figure carries its machine: a section per machine (CPU model, flags, torch build), dated.
    cpu = machine.cpu_info()
    assert re.search(rf"^## {re.escape(cpu.label())} \| {re.escape(' '.join(cpu.flags))} \| torch ", text, re.M), text
    assert re.search(r"^Measured \d{4}-\d\d-\d\d \d\d:\d\d UTC", text, re.M) and "machine: CPU " in text
    # A rerun on this machine replaces its own figures and keeps another machine's.
    other = run_all.record(text, "another CPU | avx2 | torch 2.13.0+cpu", "bench_fit.py", "### bench_fit.py (ok, 1 s)\nfigures")
    (tmp_path / "benchmarks.md").write_text(other)
    assert run_all.main() == 0
    capsys.readouterr()
    again = (tmp_path / "benchmarks.md").read_text()
    assert again.count("### bench_fit.py (ok,") == 2 and "another CPU | avx2" in again and "\nfigures\n" in again


def test_bench_scripts_print_their_help():
    # <name> -> every benchmark of the README's table (the scripts in scripts/bench/), run from the
    # repository root as the README's relative path says; all at once.
    names = re.findall(r"^\| `bench_(\w+)\.py` \|", _section(README.read_text(), "## Benchmarks"), re.M)
    scripts = (REPO_ROOT / "scripts" / "bench").glob("bench_*.py")
    assert sorted(set(names)) == sorted(p.stem.removeprefix("bench_") for p in scripts)
    running = {}
    for name in sorted(set(names)):
        argv, _ = command_argv(BENCH_HELP.replace("<name>", name))
        running[name] = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, proc in running.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, err[-2000:])
        assert out.startswith(f"usage: bench_{name}.py"), out[:200]
