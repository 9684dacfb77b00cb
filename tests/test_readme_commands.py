"""Every shell command README.md shows is run, here or by the test REGISTRY names for it.

The commands are read from README.md itself: every line of its ```bash blocks (backslash
continuations joined, trailing `# comments` dropped), the inline commands of the "Proxy
tasks" list and the `optimizer=generic ...` cell of the optimizer table. REGISTRY maps each
one to how it is exercised, and the first test fails when the README gains, loses or
changes a command, so the guide cannot drift away from the tests: change the README, then
the constant below that this file runs, then its REGISTRY entry.

The commands run as subprocesses of the installed `optlaw` (and `torchrun`) in a temporary
working directory. Where a README command would take minutes, overrides appended after it
shrink the work; each test says what it shrinks. Appending works because every parser
involved lets the last value win: Hydra applies `key=value` overrides in order (checked:
`budget.tokens=2000000 budget.tokens=8192` gives 8192, and a repeated group choice such as
`model=` also takes the last one), argparse keeps the last `--out` / `--bootstrap` /
`--module`, and `optlaw sweep` keeps the last `sweep_dir=`. So the README text is run
verbatim, followed by the shrinking overrides, and never edited in place.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optlaw import records

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
BIN = Path(sys.executable).parent  # the venv running the tests: its optlaw and torchrun
TESTS = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------
# The README commands this file runs (exactly as README.md prints them).

DEMO = "bash scripts/demo.sh"
TEST_SUITE = "bash scripts/test.sh"
GPU_VENV = "python3 -m venv .venv"
GPU_TORCH = ".venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu126"
SETUP = "bash scripts/setup.sh"
TRAIN_1M = "optlaw train model=llama/1m optimizer=adamw budget.tokens=2000000"
TRAIN_OLMO = "optlaw train model=olmo/3m optimizer=muon budget.tokens_per_param=20 run_dir=/tmp/r1"
TORCHRUN = "torchrun --standalone --nproc_per_node 2 -m optlaw.cli train model=llama/1m budget.tokens=2000000"
TRAIN_HELP = "optlaw train --help"
DATA = "optlaw data model=llama/20m data=text 'data.files=[corpus/*.jsonl]' data.tokenizer_vocab_size=8192"
TRAIN_TEXT = ("optlaw train model=llama/20m data=text 'data.files=[corpus/*.jsonl]' data.tokenizer_vocab_size=8192 "
              "budget.tokens_per_param=20")
GENERIC = "optimizer=generic optimizer.cls=torch_optimizer.Lamb optimizer.kwargs.lr=1e-3"
SWEEP_DRY = "optlaw sweep sweep=smoke sweep_dir=sweeps/smoke --dry-run"
SWEEP_LOCAL = "optlaw sweep sweep=smoke sweep_dir=sweeps/smoke launcher=local launcher.max_parallel=2"
SWEEP_SLURM = "optlaw sweep sweep=my_sweep sweep_dir=/scratch/my_sweep launcher=slurm launcher.partition=gpu"
STATUS = "optlaw status sweeps/smoke"
FIT_SMOKE = "optlaw fit --runs sweeps/smoke --law shared --holdout none --out fits/smoke"
FIT_AB = ("optlaw fit --runs sweep_a sweep_b --law compute --reference adamw --bootstrap 1000 --holdout largest "
          "--out fits/ab")
FIT_WANDB = "optlaw fit --wandb-runs my-entity/optlaw:my_sweep --law shared --out fits/from_wandb"
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

SLURM_TEST = "tests/test_slurm_sweep.py::test_slurm_sweep_finishes_every_point_and_relaunch_submits_nothing"

# README command -> how it is exercised: a test in this file, `tests/<file>.py::<test>`, or
# "not runnable here: <reason>" (allowed only for the two commands in NOT_RUNNABLE_ALLOWED).
REGISTRY: dict[str, tuple[str, ...]] = {
    # demo.sh = setup.sh + `exec .venv/bin/optlaw demo`; test_demo.py runs `optlaw demo` on a one-minute sweep.
    DEMO: ("tests/test_demo.py::test_demo_runs_fits_reports_and_reuses_finished_points",
           "test_ci_runs_the_readme_setup_scripts"),
    TEST_SUITE: ("test_ci_runs_the_readme_setup_scripts",),  # CI's .ci/run is exactly this command
    GPU_VENV: ("test_gpu_install_venv_step_creates_a_venv",),
    GPU_TORCH: ("not runnable here: downloads a CUDA build of torch from download.pytorch.org "
                "(no network and no GPU on this machine)",),
    SETUP: ("test_ci_runs_the_readme_setup_scripts",),  # CI runs it through scripts/test.sh
    TRAIN_1M: ("test_train_llama_1m_writes_a_done_record_under_runs",),
    TRAIN_OLMO: ("test_train_olmo_3m_muon_into_a_given_run_dir",),
    TORCHRUN: ("test_torchrun_two_ranks_on_cpu",),
    TRAIN_HELP: ("test_train_help",),
    DATA: ("test_text_corpus_data_then_train",),
    TRAIN_TEXT: ("test_text_corpus_data_then_train",),
    GENERIC: ("test_generic_optimizer_lamb_by_import_path",),
    SWEEP_DRY: ("test_smoke_sweep_dry_run_prints_the_plan",),
    SWEEP_LOCAL: ("test_smoke_sweep_local_launch_trains_every_point",),
    SWEEP_SLURM: ("not runnable here: needs a SLURM cluster with a GPU partition named gpu",
                  "test_readme_sweep_yaml_composes_and_plans",  # this exact line with --dry-run
                  SLURM_TEST),  # the SLURM launcher for real, on the single-node CPU cluster (launcher=slurm_cpu)
    STATUS: ("test_status_prints_the_table",),
    FIT_SMOKE: ("test_fit_smoke_sweep_shared_law",),
    FIT_AB: ("test_fit_two_sweep_dirs_compute_law",),
    FIT_WANDB: ("test_fit_wandb_runs_through_the_cli",
                "tests/test_fit_inputs.py::test_wandb_runs_fit_like_local_records"),
    FIT_CHINCHILLA: ("test_fit_chinchilla_reproduces_the_published_fit",),
    FIT_MARIN: ("test_fit_marin_optimizer_sweep_compute_law",),
    PROXY_RF: ("test_proxy_random_features",),
    PROXY_QUADRATIC: ("test_proxy_quadratic",),
    PROXY_SPECTRUM_INPUT: ("test_proxy_spectrum_from_eigenvalues",),
    PROXY_SPECTRUM_RUN: ("test_proxy_spectrum_of_a_trained_run",),
    PROXY_POINT: ("test_proxy_one_point_through_train",),
}
NOT_RUNNABLE_ALLOWED = {GPU_TORCH, SWEEP_SLURM}


# --------------------------------------------------------------------------------------
# Reading the commands out of README.md


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _normalise(command: str) -> str:
    return " ".join(command.split())


def _section(text: str, heading: str) -> str:
    """The body of the section whose heading line starts with ``heading`` (without that line)."""
    match = re.search(rf"^{re.escape(heading)}[^\n]*\n(.*?)(?=^#{{2,3}} |\Z)", text, re.M | re.S)
    assert match, f"README.md has no section {heading!r}"
    return match.group(1)


def _inline_commands(code: str) -> list[str]:
    """One inline command, or several written as alternatives: `cmd --a x | --b y --c z`."""
    first, *alternatives = [part.strip() for part in code.split(" | ")]
    tokens = first.split()
    prefix = " ".join(tokens[: next((i for i, t in enumerate(tokens) if t.startswith("--")), len(tokens))])
    return [first] + [f"{prefix} {alt}" for alt in alternatives]


def readme_commands(text: str | None = None) -> list[str]:
    text = README.read_text() if text is None else text
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        joined = re.sub(r"\\\n", " ", block)
        for line in joined.splitlines():
            command = _normalise(_strip_comment(line))
            if command:
                commands.append(command)
    for code in re.findall(r"`([^`\n]+)`", _section(text, "### Proxy tasks")):
        if code.startswith("optlaw "):
            commands.extend(_normalise(c) for c in _inline_commands(code))
    commands.extend(_normalise(code) for code in re.findall(r"`(optimizer=generic [^`]+)`", text))
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


def test_every_readme_command_is_in_the_registry():
    commands = readme_commands()
    missing = [c for c in commands if c not in REGISTRY]
    stale = [c for c in REGISTRY if c not in commands]
    assert not missing, ("README commands no test exercises; run each in a test and add it to REGISTRY in "
                         f"tests/test_readme_commands.py: {missing}")
    assert not stale, f"REGISTRY names commands README.md no longer shows (update them): {stale}"


def test_registry_entries_name_real_tests():
    for command, ways in REGISTRY.items():
        assert ways, command
        for way in ways:
            if way.startswith("not runnable here: "):
                assert command in NOT_RUNNABLE_ALLOWED, f"{command!r} must be run, not excused"
            elif "::" in way:
                path, name = way.split("::")
                source = (REPO_ROOT / path).read_text()
                assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"{way} does not exist"
            else:
                assert way.startswith("test_") and callable(globals().get(way)), f"no test {way} in this file"


# --------------------------------------------------------------------------------------
# Running them


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a README command: offline, caches under ``root`` (never in the repo)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPTLAW_EXTRA_CONFIGS", "OPTLAW_CACHE_DIR")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(root / "wandb"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OPTLAW_CACHE_DIR=str(root / "cache"))
    env.update(extra)
    return env


def run_readme(command: str, cwd: Path, extra: list[str] | tuple[str, ...] = (), env: dict | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a README command verbatim (plus ``extra`` arguments appended) with the venv's executables."""
    argv = shlex.split(command) + list(extra)
    if argv[0] in ("optlaw", "torchrun"):
        argv[0] = str(BIN / argv[0])
    proc = subprocess.run(argv, cwd=cwd, env=env or cli_env(cwd), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"`{command}` (+ {extra}) exited {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def only_run_dir(root: Path) -> Path:
    runs = sorted(p for p in (root / "runs").iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


# Tiny shapes for runs whose README command names a real-size preset (llama/20m: 7 layers,
# d_model 512, seq_len 2048): one layer of width 64 at seq_len 64 keeps a step well under a second.
TINY_MODEL = ["model.n_layers=1", "model.d_model=64", "model.n_heads=2", "model.n_kv_heads=2", "model.head_dim=32",
              "model.ffn_hidden=128", "model.seq_len=64"]
# Fewer validation tokens (131072 by default), no intermediate evaluations, one timed step-cost repeat.
QUICK_EVAL = ["eval.tokens=4096", "eval.fractions=[]", "step_cost.repeats=1"]


# --- Quick start and installation -------------------------------------------------------


def test_ci_runs_the_readme_setup_scripts():
    """`bash scripts/test.sh` is CI (.ci/run); it runs `bash scripts/setup.sh`, and demo.sh is setup + `optlaw demo`.

    Running them here would pip-install into the repository's own .venv (pip upgrades itself
    and builds optlaw from the network), so the chain is checked instead: CI executes it from
    a clean clone on every run, and tests/test_demo.py runs `optlaw demo` end to end.
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
    run_readme(GPU_VENV, tmp_path)
    version = subprocess.run([str(tmp_path / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                             capture_output=True, text=True, check=True)
    assert Path(version.stdout.strip()).resolve() == (tmp_path / ".venv").resolve()


# --- Training one grid point ------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_1m_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The README's first train command. Shrunk: budget.tokens 2,000,000 -> 8192 (2 steps of 4096)."""
    root = tmp_path_factory.mktemp("train_1m")
    proc = run_readme(TRAIN_1M, root, ["budget.tokens=8192", *QUICK_EVAL])
    return only_run_dir(root), proc


def test_train_llama_1m_writes_a_done_record_under_runs(llama_1m_run):
    run_dir, proc = llama_1m_run
    record = records.read_record(run_dir)
    assert record["status"] == "done" and run_dir.name == record["run_id"]  # -> runs/<run id>/
    assert (record["family"], record["size"], record["optimizer"]) == ("llama", "1m", "adamw")
    assert record["D"] == record["tokens_trained"] == 8192 and record["steps_done"] == 2
    assert np.isfinite(record["final_val_loss"]) and record["final_val_loss"] < np.log(1024)  # it learned
    for name in ("metrics.jsonl", "config.yaml", "routing.json"):
        assert (run_dir / name).exists(), name
    assert f"{record['run_id']}: done" in proc.stdout


def test_train_olmo_3m_muon_into_a_given_run_dir(tmp_path):
    # Shrunk: budget.tokens_per_param 20 -> 0.003 (9,352 tokens requested: 2 steps of 4096), and
    # run_dir=/tmp/r1 -> <tmp_path>/r1 so the test writes only under its own folder.
    run_dir = tmp_path / "r1"
    run_readme(TRAIN_OLMO, tmp_path, ["budget.tokens_per_param=0.003", f"run_dir={run_dir}", *QUICK_EVAL])
    record = records.read_record(run_dir)
    assert record["status"] == "done"
    assert (record["family"], record["size"], record["optimizer"]) == ("olmo", "3m", "muon")
    assert record["D_requested"] == round(0.003 * record["N_non_embedding"])
    assert record["D"] == 8192 and record["step_cost_ratio"] > 0
    groups = {row["group"]: row["optimizer"] for row in json.loads((run_dir / "routing.json").read_text())}
    assert groups["hidden_matrix"] == "muon" and groups["embedding"] == "adamw"
    assert not (tmp_path / "runs").exists()


def test_torchrun_two_ranks_on_cpu(tmp_path):
    # Real 2-process DDP over gloo. Shrunk: budget.tokens 2,000,000 -> 8192 (2 steps of 4096 = 16 x 128 per rank).
    proc = run_readme(TORCHRUN, tmp_path, ["budget.tokens=8192", *QUICK_EVAL])
    record = records.read_record(only_run_dir(tmp_path))
    assert record["status"] == "done" and record["tokens_trained"] == 8192
    assert record["budget"]["world_size"] == 2 and record["budget"]["grad_accum_steps"] == 1
    assert "x 2 ranks" in proc.stdout


def test_train_help(tmp_path):
    out = run_readme(TRAIN_HELP, tmp_path).stdout
    assert out.startswith("usage: optlaw train") and "budget.tokens" in out
    assert not (tmp_path / "runs").exists()


# --- Data -------------------------------------------------------------------------------


def _write_corpus(folder: Path) -> None:
    """JSON lines with a `text` field (docs/data.md), ~85k tokens over 1,200 documents."""
    rng = np.random.default_rng(0)
    syllables = ["ka", "to", "ri", "me", "su", "la", "no", "vi", "de", "po", "an", "el", "ur", "is", "ob", "ex"]
    words = ["".join(rng.choice(syllables, size=rng.integers(1, 5))) for _ in range(3000)]
    folder.mkdir()
    for part in range(2):
        with open(folder / f"part{part}.jsonl", "w") as fh:
            for i in range(600):
                body = " ".join(rng.choice(words, size=rng.integers(20, 120)))
                fh.write(json.dumps({"text": body, "id": i}) + "\n")


def test_text_corpus_data_then_train(tmp_path):
    _write_corpus(tmp_path / "corpus")
    # Both commands: a held-out split of 8192 tokens instead of 1,048,576 (this corpus is ~85k tokens);
    # the split rule is part of the cache key, so both commands must give the same value.
    split = ["data.val_tokens=8192"]
    built = run_readme(DATA, tmp_path, split)
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
    trained = run_readme(TRAIN_TEXT, tmp_path, split + shrink)
    record = records.read_record(only_run_dir(tmp_path))
    assert record["status"] == "done" and record["tokens_trained"] == record["D"] == 4096
    assert record["config"]["data"]["name"] == "text" and record["entropy_floor_nats"] is None
    assert (record["family"], record["size"]) == ("llama", "20m")
    # Training reused the cache entry `optlaw data` built: no second entry, nothing tokenized again.
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]
    assert (entry / "meta.json").stat().st_mtime_ns == meta_mtime
    assert "tokenizing" in built.stderr and "tokenizing" not in trained.stderr


# --- Optimizers -------------------------------------------------------------------------


def test_generic_optimizer_lamb_by_import_path(tmp_path):
    # The table cell's overrides on the README's first train command, shrunk to budget.tokens=8192.
    run_readme(f"{TRAIN_1M} {GENERIC}", tmp_path, ["budget.tokens=8192", *QUICK_EVAL])
    run_dir = only_run_dir(tmp_path)
    record = records.read_record(run_dir)
    assert record["status"] == "done" and record["optimizer"] == "generic"
    assert record["hyperparameters"]["hyperparameters"]["generic"] == {
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
    out["dry"] = run_readme(SWEEP_DRY, root).stdout
    out["launch"] = run_readme(SWEEP_LOCAL, root).stdout
    out["status"] = run_readme(STATUS, root).stdout
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
        assert record["status"] == "done" and record["sweep"] == "smoke"
        assert record["tokens_trained"] == point["tokens"]
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
        assert row[1] == "done" and float(row[2]) == pytest.approx(record["final_val_loss"], abs=1e-4)
    assert lines[-1] == "2 points: 2 done, 0 diverged, 0 failed, 0 running, 0 pending"


@pytest.mark.slow
def test_fit_smoke_sweep_shared_law(smoke):
    root = smoke["root"]
    proc = run_readme(FIT_SMOKE, root)
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
    run_readme("optlaw sweep sweep=sweep_b sweep_dir=sweep_b launcher.max_parallel=2", root, env=env)
    (root / "sweep_a").symlink_to(root / "sweeps" / "smoke", target_is_directory=True)
    return root


@pytest.mark.slow
def test_fit_two_sweep_dirs_compute_law(two_sweeps):
    root = two_sweeps
    run_readme(FIT_AB, root)
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


class _WandbRun:
    def __init__(self, record: dict):
        self.id, self.summary = record["run_id"], record


class _WandbApi:
    """Stands in for wandb.Api() (no network here); summaries are the records, as the trainer mirrors them."""

    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        group = (filters or {}).get("group")
        return [r for r in self._runs if group is None or r.summary.get("sweep") == group]


@pytest.mark.slow
def test_fit_wandb_runs_through_the_cli(two_sweeps, tmp_path, monkeypatch, capsys):
    import wandb

    from optlaw import cli
    from optlaw.fit import fit_shared, load_runs

    # The real sweep records as W&B summaries in group my_sweep, plus one run of another group.
    found = [records.read_record(p.parent) for p in sorted(two_sweeps.glob("sweep_[ab]/runs/*/run.json"))]
    runs = [_WandbRun({**rec, "sweep": "my_sweep"}) for rec in found]
    runs.append(_WandbRun({**found[0], "run_id": "elsewhere", "sweep": "other", "final_val_loss": 99.0}))
    api = _WandbApi(runs)
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


def test_readme_sweep_yaml_composes_and_plans(tmp_path):
    configs = tmp_path / "configs"
    (configs / "sweep").mkdir(parents=True)
    (configs / "sweep" / "my_sweep.yaml").write_text(readme_sweep_yaml())
    env = cli_env(tmp_path, OPTLAW_EXTRA_CONFIGS=str(configs))
    # The README's SLURM line on that file, planned only: `--dry-run` appended and sweep_dir=/scratch/my_sweep
    # -> my_sweep in tmp_path. It composes every point (as `optlaw train` would) with launcher=slurm and
    # the GPU partition, and prints the plan with GPU-hours at the slurm launcher's throughput. Submitting
    # needs a GPU partition; tests/test_slurm_sweep.py submits to a real (CPU) SLURM cluster.
    plan = run_readme(SWEEP_SLURM, tmp_path, ["sweep_dir=my_sweep", "--dry-run"], env=env).stdout
    # 3 models x 4 budgets x (adamw + soap + muon at 3 LR multipliers) = 60 points.
    assert plan.startswith("sweep my_sweep: 60 points in my_sweep (manifest.json written)")
    assert "to run now: 60 points" in plan and "GPU-hours at 1.25e+14 FLOP/s" in plan
    manifest = json.loads((tmp_path / "my_sweep" / "manifest.json").read_text())
    assert {p["run_id"].split("-")[1] for p in manifest["points"]} == {"20m", "60m", "150m"}
    assert sum("lr_mult=" in line for line in plan.splitlines()) == 36
    assert manifest["definition"]["fixed"] == {"wandb.mode": "online"}


# --- Fits on published data (run from the repository root so ../shared/reference-data resolves) ---


def _repo_untouched(before: set[str]) -> None:
    assert {p.name for p in REPO_ROOT.iterdir()} == before, "a README command wrote into the repository"


def test_fit_chinchilla_reproduces_the_published_fit(reference_data, tmp_path):
    before = {p.name for p in REPO_ROOT.iterdir()}
    out = tmp_path / "chinchilla"
    proc = run_readme(FIT_CHINCHILLA, REPO_ROOT, ["--out", str(out)], env=cli_env(tmp_path))  # --out -> tmp
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
    run_readme(FIT_MARIN, REPO_ROOT, ["--out", str(out), "--bootstrap", "200"], env=cli_env(tmp_path))
    _repo_untouched(before)
    doc = json.loads((out / "fit.json").read_text())
    assert doc["law"] == "compute" and doc["n_points"] == 150 and len(doc["optimizers"]) == 11
    assert doc["n_basis"] == "non_embedding" and doc["bootstrap_replicates"] == 200
    assert all(o["compute_multiplier"] > 0 for o in doc["optimizers"].values())
    assert (out / "report.md").exists() and (out / "frontier.png").exists()


# --- Proxy tasks ------------------------------------------------------------------------


def test_proxy_random_features(tmp_path):
    # Shrunk from the full study (~4 min): N 16-128, input_dim 512, 3 seeds, s in {1.0, 1.5},
    # 200 bootstrap resamples, one worker, one sensitivity variant (steps=12) (as tests/test_proxy_random_features.py).
    shrink = ["N_values=[16,32,64,128]", "input_dim=512", "seeds=[0,1,2]", "s_values=[1.0,1.5]", "workers=1",
              "bootstrap_samples=200", "progress=false", "sensitivity.steps=[12]", "sensitivity.damping=[]",
              "sensitivity.source_r=[]", "sensitivity.input_dim=[]", "sensitivity.n_samples=[]"]
    proc = run_readme(PROXY_RF, tmp_path, shrink)
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
    proc = run_readme(PROXY_QUADRATIC, tmp_path, shrink)
    out = tmp_path / "DIR"
    doc = json.loads((out / "quadratic.json").read_text())
    assert doc["setting"]["s"] == 1.5 and set(doc["regimes"]) == {"damped"}
    assert len(list((out / "runs" / "damped").rglob("run.json"))) == 3 * 5 * 5
    assert (out / "report.md").exists() and (out / "quadratic_loss_vs_D.png").stat().st_size > 0
    assert "wrote DIR/report.md" in proc.stdout


def test_proxy_spectrum_from_eigenvalues(tmp_path):
    np.save(tmp_path / "eig.npy", np.arange(1, 401, dtype=float) ** -1.5)
    out = run_readme(PROXY_SPECTRUM_INPUT, tmp_path).stdout
    assert out.startswith("s_hat = 1.500")
    shifts = dict(re.findall(r"^  (kron|sign|ngd)\s+theory ([+-][\d.]+)", out, re.M))
    assert set(shifts) == {"kron", "sign", "ngd"} and float(shifts["ngd"]) > 0


def test_proxy_spectrum_of_a_trained_run(llama_1m_run, tmp_path):
    # RUN_DIR is a folder of that name (a link to the README's llama/1m run); NAME is replaced by
    # appending a real module, --module model.layers.1.mlp.down_proj (argparse keeps the last).
    run_dir, _ = llama_1m_run
    (tmp_path / "RUN_DIR").symlink_to(run_dir, target_is_directory=True)
    out = run_readme(PROXY_SPECTRUM_RUN, tmp_path, ["--module", "model.layers.1.mlp.down_proj"]).stdout
    s_hat = float(re.match(r"s_hat = ([\d.]+) \(ranks \d+-\d+ of 416,", out).group(1))  # ffn_hidden 416 inputs
    assert 0 < s_hat < 5 and "ngd   theory" in out


def test_proxy_one_point_through_train(tmp_path):
    run_readme(PROXY_POINT, tmp_path)
    record = records.read_record(only_run_dir(tmp_path))
    assert record["status"] == "done" and record["task"] == "quadratic" and record["optimizer"] == "kron"
    assert record["N"] == 256 and record["D"] == record["tokens_trained"] == 256  # D counts steps here
    assert record["final_val_loss"] == pytest.approx(sum(record["loss_parts"].values()))
