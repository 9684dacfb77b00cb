"""Every shell command docs/*.md shows is run, here or by the test its REGISTRY entry names.

As tests/test_readme_commands.py does for README.md, with the same reading of a page
(tests/_commands.py: ```bash/```sh blocks, commands in untyped ``` blocks and 4-space indented
blocks such as usage lines, inline `code spans` that are commands). REGISTRY has one table per
docs file; the first test fails when a page gains, loses or changes a command, or a new page
appears. Commands that repeat a README command map to the README test that runs it.

Commands run verbatim in a temporary folder, with shrinking arguments appended (the last
value wins, as explained in tests/test_readme_commands.py); placeholders (DIR, SWEEP_DIR,
<overrides>, /path/to/tokenizer, $SLURM_ARRAY_TASK_ID, `...`) are replaced by real values,
and each test says which.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from optlaw import records

sys.path.insert(0, os.path.dirname(__file__))
from _commands import (  # noqa: E402  (shared with tests/test_readme_commands.py)
    DOCS, PROXY_RF_SHRINK, REPO_ROOT, cli_env, guide_commands, registry_problems, run_command, write_jsonl_corpus,
)
from test_sweep_grid import write_sweep  # noqa: E402  (the tiny two-point sweep definition)

README_TESTS = "tests/test_readme_commands.py::"
SLURM_TESTS = "tests/test_slurm_sweep.py::"

# --------------------------------------------------------------------------------------
# The docs commands this file runs (exactly as the pages print them).

# configuration.md (generated from configs/ by scripts/gen_config_reference.py; the commands are in config comments)
TASK_QUADRATIC = "optlaw train task=quadratic"
TASK_RANDOM_FEATURES = "optlaw train task=random_features"
# data.md
DATA_MODULE = (".venv/bin/python -m optlaw data model=llama/20m data=text 'data.files=[corpus/*.jsonl]' "
               "data.tokenizer_vocab_size=8192")
DATA_TRAIN = (".venv/bin/optlaw train model=llama/20m data=text 'data.files=[corpus/*.jsonl]' "
              "data.tokenizer_vocab_size=8192 ...")
DATA_PARQUET = (".venv/bin/python -m optlaw data model=llama/20m data=text 'data.files=[shards/*.parquet]' "
                "data.tokenizer=/path/to/tokenizer")
# gpu.md: the GPU check needs a GPU (and its wheels a registry); the tests named in the REGISTRY run
# the same script in its dry-run / local-wheel / --cpu-smoke forms, and the FSDP2 path with 2 gloo ranks.
GPU_WHEELS = "bash scripts/gpu_wheels.sh wheels/"
GPU_CHECK = "python scripts/gpu_check.py --wheels wheels/ --out gpu_check/"
GPU_CHECK_SMOKE = "python scripts/gpu_check.py --cpu-smoke --out /tmp/gpu_check"
FSDP_TORCHRUN = "torchrun --nproc_per_node=8 -m optlaw train model=llama/1b perf.sharding=fsdp"
DATA_FACTS_FIT = "optlaw fit --csv scripts/research/results/protocol_transfer.csv --law compute --bootstrap 300"
# design.md
SWEEP_POINT = "optlaw train <overrides> run_dir=<sweep_dir>/runs/<run_id>"
PYTHON_M_OPTLAW = "python -m optlaw"
# fitting.md
FIT_USAGE = ("optlaw fit --runs SWEEP_DIR... | --csv FILE | --wandb-runs ENTITY/PROJECT[:GROUP] --out DIR "
             "[--law chinchilla|shared|compute] [--variant full|rho_D|rho_N] [--reference adamw] [--bootstrap 1000] "
             "[--holdout largest|none|OPT:N:D,...] [--n-basis total|non_embedding] [--objective huber_log|squared] "
             "[--seeds all|mean] [--cost flops|wallclock] [--column NAME=CSV_COLUMN ...] [--tuning-column COL] "
             "[--seed-column COL] [--default-optimizer NAME] "
             "[--drop-highest-loss K] [--wandb disabled|offline|online] [--wandb-project optlaw] "
             "[--wandb-group NAME] [--seed 0] [--cross-check K] [--no-plots]")
FIT_CHINCHILLA_DOCS = (
    'optlaw fit --csv ../shared/reference-data/epoch_chinchilla_svg_extracted_data.csv --column "N=Model Size" '
    '--column "flops=Training FLOP" --default-optimizer chinchilla --drop-highest-loss 5 --n-basis total '
    "--law chinchilla --holdout none --out out/chinchilla")
FIT_MARIN_DOCS = (
    "optlaw fit --csv ../shared/reference-data/marin_fantastic_optimizers_final_losses.csv "
    "--column optimizer=optimizer_canonical --column N=N_nonembed --column D=D_tokens --column loss=loss_c4_en "
    "--n-basis non_embedding --law compute --out out/marin")
# optimizers.md
BENCH_OPTIM = ".venv/bin/python scripts/bench/bench_optim.py --rounds 5"
BENCH_OPTIM_MUON = ".venv/bin/python scripts/bench/bench_optim.py --only Muon --rounds 7"
# proxy.md
PROXY_RF_USAGE = "optlaw proxy random_features --out DIR [key=value ...]"
PROXY_QUADRATIC_USAGE = "optlaw proxy quadratic --out DIR [key=value ...]"
PROXY_SPECTRUM_USAGE = "optlaw proxy spectrum (--input FILE.npy | --run RUN_DIR --module NAME) [--table alpha.json]"
PROXY_RF_POINT = "optlaw train task=random_features proxy_optimizer=ngd N=256 steps=6 s=1.0"
PROXY_RF = "optlaw proxy random_features --out DIR"
PROXY_SPECTRUM_MODULE = "optlaw proxy spectrum --run RUN_DIR --module model.layers.1.mlp.down_proj"
# run_record.md
RUN_DIR_TRAIN = "optlaw train ... run_dir=<dir>"
# sweeps.md
SWEEP_USAGE = ("optlaw sweep sweep=NAME [launcher=local|slurm|slurm_cpu] [sweep_dir=PATH] [--dry-run] "
               "[--retry-diverged] [--follow] [sweep.KEY=VALUE ...] [launcher.KEY=VALUE ...] [TRAIN_KEY=VALUE ...]")
STATUS_USAGE = "optlaw status [SWEEP_DIR]"
FIT_TUNING = "optlaw fit --runs SWEEP_DIR"
SWEEP_JOB = "python -m optlaw.sweep.job SWEEP_DIR --index $SLURM_ARRAY_TASK_ID"
# What each task of a filled sbatch script runs (the script of test_sbatch_template_runs_the_manifest_points).
WORKER_PACK = "python -m optlaw.entry.worker_cmd pack SWEEP_DIR --packs FILE --index $SLURM_ARRAY_TASK_ID"
SLURM_CLUSTER = "scripts/slurm_cluster.sh start"

# Repeated from the README (run by tests/test_readme_commands.py).
BENCH_ALL = ".venv/bin/python scripts/bench/run_all.py"
LADDER = "python -m optlaw.models.ladder"
SBATCH = "sbatch SWEEP_DIR/slurm/array-1.sbatch"
PROXY_QUADRATIC = "optlaw proxy quadratic --out DIR"
PROXY_POINT = "optlaw train task=quadratic proxy_optimizer=kron N=256 steps=256"

SBATCH_TEST = SLURM_TESTS + "test_sbatch_template_runs_the_manifest_points"
SLURM_SWEEP_TEST = SLURM_TESTS + "test_slurm_sweep_finishes_every_point_and_relaunch_submits_nothing"
SLURM_TUNE_TEST = SLURM_TESTS + "test_a_two_round_tune_on_slurm_queues_each_round_from_the_records"

# docs file -> {command -> how it is exercised} (as in tests/test_readme_commands.py; no docs
# command is excused as not runnable).
REGISTRY: dict[str, dict[str, tuple[str, ...]]] = {
    "benchmarks.md": {
        BENCH_ALL: (README_TESTS + "test_bench_run_all_on_a_shrunk_bench_fit",),
        BENCH_OPTIM_MUON: ("test_bench_optim_muon_on_a_small_model",),  # the shared-machine run on machine C
    },
    "configuration.md": {
        TASK_QUADRATIC: ("test_proxy_points_through_train",),
        TASK_RANDOM_FEATURES: ("test_proxy_points_through_train",),
        LADDER: (README_TESTS + "test_ladder_module_regenerates_the_model_presets",),
    },
    "data.md": {
        DATA_MODULE: ("test_data_module_tokenizes_jsonl_then_parquet_with_its_tokenizer",),
        # The README's train command on the same corpus, `...` being its budget.tokens_per_param=20.
        DATA_TRAIN: (README_TESTS + "test_text_corpus_data_then_train", "test_data_train_command_is_the_readmes"),
        DATA_PARQUET: ("test_data_module_tokenizes_jsonl_then_parquet_with_its_tokenizer",),
        DATA_FACTS_FIT: ("test_facts_regime_fit_is_the_documented_law",),
    },
    "wandb.md": {},  # no commands: it describes what runs and fits log
    "design.md": {
        PYTHON_M_OPTLAW: ("test_python_m_optlaw_is_the_console_script",),
        SWEEP_POINT: ("test_sweep_points_by_hand_and_by_the_sbatch_task_command",
                      README_TESTS + "test_smoke_sweep_local_launch_trains_every_point"),  # the launcher's own call
    },
    "fitting.md": {
        FIT_USAGE: ("test_fit_usage_matches_the_parser",
                    "test_fit_usage_options_no_example_shows",  # --variant --objective --seeds --seed --wandb-group
                    README_TESTS + "test_fit_smoke_sweep_shared_law",  # --runs, --holdout none
                    README_TESTS + "test_fit_two_sweep_dirs_compute_law",  # --law compute, --holdout largest, ...
                    README_TESTS + "test_fit_wandb_runs_with_and_without_a_group",  # --wandb-runs
                    README_TESTS + "test_fit_logs_to_wandb_online_in_the_sweeps_group",  # --wandb
                    README_TESTS + "test_fit_chinchilla_reproduces_the_published_fit",  # --csv, --column, ...
                    "tests/test_fit_cli.py::test_fit_chinchilla_csv_through_the_cli",  # --cross-check, --no-plots
                    "tests/test_fit_laws.py::test_wallclock_cost_basis_and_budget_outside_the_data_warns"),  # wallclock
        FIT_CHINCHILLA_DOCS: (README_TESTS + "test_fit_chinchilla_reproduces_the_published_fit",
                              "test_fitting_examples_are_the_readmes"),
        FIT_MARIN_DOCS: (README_TESTS + "test_fit_marin_optimizer_sweep_compute_law",
                         "test_fitting_examples_are_the_readmes"),
    },
    "gpu.md": {
        GPU_WHEELS: ("tests/test_gpu_check.py::test_gpu_wheels_dry_run_asks_pip_for_python_312_manylinux_wheels_of_the_missing_packages",),
        GPU_CHECK: ("tests/test_gpu_check.py::test_install_from_a_local_wheel_folder_into_a_temporary_target",
                    "tests/test_gpu_check.py::test_cpu_smoke_runs_every_check_and_writes_json_and_markdown"),
        GPU_CHECK_SMOKE: ("tests/test_gpu_check.py::test_cpu_smoke_runs_every_check_and_writes_json_and_markdown",),
        FSDP_TORCHRUN: ("tests/test_gpu_fsdp.py::test_two_rank_fsdp_matches_one_process_and_resumes_exactly",),
    },
    "optimizers.md": {
        BENCH_OPTIM: ("test_bench_optim_on_a_small_model",),
    },
    "proxy.md": {
        PROXY_RF_USAGE: (README_TESTS + "test_proxy_random_features",),  # key=value: the shrinking overrides
        PROXY_QUADRATIC_USAGE: (README_TESTS + "test_proxy_quadratic",),
        PROXY_SPECTRUM_USAGE: (README_TESTS + "test_proxy_spectrum_from_eigenvalues",
                               README_TESTS + "test_proxy_spectrum_of_a_trained_run",
                               "test_proxy_spectrum_reads_a_measured_table"),
        PROXY_RF_POINT: ("test_proxy_points_through_train",),
        PROXY_POINT: (README_TESTS + "test_proxy_one_point_through_train",),
        PROXY_RF: (README_TESTS + "test_proxy_random_features", "test_proxy_spectrum_reads_a_measured_table"),
        # The README test appends exactly this module to the README's `--module NAME`.
        PROXY_SPECTRUM_MODULE: (README_TESTS + "test_proxy_spectrum_of_a_trained_run",),
        PROXY_QUADRATIC: (README_TESTS + "test_proxy_quadratic",),
    },
    "run_record.md": {
        RUN_DIR_TRAIN: (README_TESTS + "test_train_olmo_3m_muon_into_a_given_run_dir",  # run_dir given
                        README_TESTS + "test_train_llama_1m_writes_a_done_record_under_runs"),  # the default
    },
    "sweeps.md": {
        SWEEP_USAGE: ("test_sweep_points_by_hand_and_by_the_sbatch_task_command",  # NAME, PATH, --dry-run, *.KEY
                      README_TESTS + "test_smoke_sweep_local_launch_trains_every_point",  # launcher=local
                      README_TESTS + "test_readme_sweep_yaml_composes_and_plans",  # launcher=slurm
                      SLURM_SWEEP_TEST,  # launcher=slurm_cpu
                      # --retry-diverged
                      "tests/test_sweep_local.py::test_local_sweep_runs_every_point_then_skips_finished",
                      SLURM_TUNE_TEST),  # --follow
        STATUS_USAGE: ("test_sweep_points_by_hand_and_by_the_sbatch_task_command",
                       README_TESTS + "test_status_prints_the_table"),
        FIT_TUNING: ("tests/test_fit_tuning.py::test_optlaw_fit_on_a_tuning_sweep_prints_the_laws",),
        # How the SLURM launcher runs a point with several GPUs: the argv is checked without GPUs,
        # and torchrun --standalone runs for real on CPU with 2 ranks.
        "torchrun --standalone": ("tests/test_sweep_grid.py::"
                                  "test_slurm_resources_follow_model_size_and_several_gpus_use_torchrun",
                                  README_TESTS + "test_torchrun_two_ranks_on_cpu"),
        SBATCH: (SBATCH_TEST,),  # see the README's REGISTRY entry for the substitutions
        SWEEP_JOB: ("test_sweep_points_by_hand_and_by_the_sbatch_task_command",),
        WORKER_PACK: (SBATCH_TEST,),
        # The SLURM tests' fixture runs `bash scripts/slurm_cluster.sh start` when no cluster is up
        # (and scripts/test.sh before pytest); where it cannot start they skip, or fail under CI=true.
        SLURM_CLUSTER: (SLURM_SWEEP_TEST, "test_slurm_cluster_script_runs_as_typed"),
    },
}


# --------------------------------------------------------------------------------------
# The registry


def test_registry_has_one_table_per_docs_page():
    assert sorted(REGISTRY) == sorted(p.name for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("page", sorted(REGISTRY))
def test_every_docs_command_is_in_the_registry(page):
    commands = guide_commands((DOCS / page).read_text())
    problems = registry_problems(REGISTRY[page], commands, set(), globals())
    assert not problems, f"docs/{page} vs REGISTRY['{page}'] in tests/test_docs_commands.py:\n" + "\n".join(problems)


def test_extraction_reads_usage_lines_indented_blocks_and_table_cells():
    text = ("Output, not commands:\n\n```\noptlaw variable projection: 2.4 s\nspeed ratio 65x\n```\n\n"
            "```\noptlaw status [DIR]\noptlaw sweep sweep=NAME [--dry-run]\n      [key=value ...]\n```\n\n"
            "Math, then commands:\n\n    L(t) = L_min + 1/2 sum_i a_i\n\n"
            "    # a comment\n    .venv/bin/python -m pkg.cli a=1\n    .venv/bin/optlaw train a=1 ...\n\n"
            "| `optlaw proxy spectrum (--input F \\| --run R) [--table t]` | `optlaw.proxy.diagnostic` |\n")
    assert guide_commands(text) == [
        "optlaw status [DIR]", "optlaw sweep sweep=NAME [--dry-run] [key=value ...]",
        ".venv/bin/python -m pkg.cli a=1", ".venv/bin/optlaw train a=1 ...",
        "optlaw proxy spectrum (--input F | --run R) [--table t]"]


# --------------------------------------------------------------------------------------
# Running them: configuration.md and proxy.md


def test_proxy_points_through_train(tmp_path):
    # The task defaults (configs/task_quadratic.yaml, configs/task_random_features.yaml), and proxy.md's ngd point.
    expected = {TASK_QUADRATIC: ("quadratic", "gd", 256, 256), TASK_RANDOM_FEATURES: ("random_features", "gd", 256, 10),
                PROXY_RF_POINT: ("random_features", "ngd", 256, 6)}
    for i, (command, (task, optimizer, n, d)) in enumerate(expected.items()):
        root = tmp_path / str(i)
        root.mkdir()
        run_command(command, root)
        record = records.read_record(next((root / "runs").iterdir()))  # -> runs/<run id>/run.json
        assert record.status == "done" and (record.task, record.optimizer) == (task, optimizer)
        assert (record.N, record.D) == (n, d) and np.isfinite(record.final_val_loss)


def test_proxy_spectrum_reads_a_measured_table(tmp_path):
    # DIR -> a folder named DIR; `[key=value ...]` -> the shrinking overrides of the README test.
    run_command(PROXY_RF, tmp_path, PROXY_RF_SHRINK)
    # The usage line's --input form with --table: FILE.npy -> eigenvalues k^-1.5 saved under that name,
    # alpha.json -> the study's DIR/alpha.json (the --run form is tests/test_readme_commands.py's).
    np.save(tmp_path / "FILE.npy", np.arange(1, 401, dtype=float) ** -1.5)
    command = PROXY_SPECTRUM_USAGE.replace("(--input FILE.npy | --run RUN_DIR --module NAME) [--table alpha.json]",
                                           "--input FILE.npy --table DIR/alpha.json")
    out = run_command(command, tmp_path).stdout
    assert out.startswith("s_hat = 1.500")
    measured = dict(re.findall(r"^  (kron|sign|ngd)\s+theory [+-][\d.]+\s+from table ([+-][\d.]+)", out, re.M))
    assert set(measured) == {"kron", "sign", "ngd"} and float(measured["ngd"]) > 0


# --------------------------------------------------------------------------------------
# data.md


def test_data_module_tokenizes_jsonl_then_parquet_with_its_tokenizer(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl_corpus(tmp_path / "corpus")
    # Both commands: a held-out split of 8192 tokens instead of 1,048,576 (this corpus is ~85k tokens).
    split = ["data.val_tokens=8192"]
    built = run_command(DATA_MODULE, tmp_path, split)
    trained = json.loads(built.stdout)
    assert trained["documents"] == 1200 and 1024 < trained["vocab_size"] <= 8192 and "tokenizing" in built.stderr

    # The same documents as parquet shards (a `text` column), and the tokenizer the first command
    # trained as "an existing tokenizer": /path/to/tokenizer -> a folder holding that tokenizer.json.
    (tmp_path / "shards").mkdir()
    (tmp_path / "tokenizer").mkdir()
    shutil.copy(Path(trained["directory"]) / "tokenizer.json", tmp_path / "tokenizer" / "tokenizer.json")
    for part in sorted((tmp_path / "corpus").glob("*.jsonl")):
        rows = [json.loads(line) for line in part.read_text().splitlines()]
        pq.write_table(pa.table({"text": [r["text"] for r in rows], "id": [r["id"] for r in rows]}),
                       tmp_path / "shards" / f"{part.stem}.parquet")
    command = DATA_PARQUET.replace("/path/to/tokenizer", str(tmp_path / "tokenizer"))
    given = json.loads(run_command(command, tmp_path, split).stdout)
    assert given["directory"] != trained["directory"]  # a new cache entry (other files, other tokenizer source)
    # Same documents, same tokenizer: the same vocabulary and the same token counts.
    for key in ("documents", "vocab_size", "dtype", "train_tokens", "val_tokens"):
        assert given[key] == trained[key], key


def test_facts_regime_fit_is_the_documented_law(tmp_path):
    # data.md's fit of the measured facts-corpus grid (72 recorded cells, committed as a CSV), from
    # the repository root as written; DIR -> tmp_path/fit, without plots. It must give the printed
    # law and meet issue 13's width criteria on the rho intervals, and the printed verdicts: the
    # shared law weak, constant rho rejected, the holdout won by the separate laws.
    run_command(DATA_FACTS_FIT, REPO_ROOT, ["--out", str(tmp_path / "fit"), "--no-plots"])
    doc = json.loads((tmp_path / "fit" / "fit.json").read_text())
    shared = doc["shared"]
    assert (round(shared["E"], 3), round(shared["alpha"], 3), round(shared["beta"], 3)) == (1.263, 0.653, 0.676)
    others = {k: v for k, v in doc["optimizers"].items() if k != "adamw"}
    assert sorted(others) == ["muon", "shampoo", "soap"]
    for name, o in others.items():
        assert o["rho_D_ci"][1] / o["rho_D_ci"][0] <= 2.0, name
        assert o["rho_N_ci"][1] / o["rho_N_ci"][0] <= 3.0, name
    assert round(others["muon"]["rho_D"], 2) == 1.83
    assert doc["holdout_error"]["shared"]["rmse_log"] > doc["holdout_error"]["separate"]["rmse_log"]
    assert shared["identifiability"]["verdict"] == "weak"
    assert doc["rho_constancy"]["p_value"] < 0.05


def test_data_train_command_is_the_readmes():
    # data.md's train line is the README's (tests/test_readme_commands.py runs it on the same corpus)
    # with `optlaw` spelt .venv/bin/optlaw and its budget (budget.tokens_per_param=20) written `...`.
    from test_readme_commands import TRAIN_TEXT

    assert DATA_TRAIN == ".venv/bin/" + TRAIN_TEXT.replace("budget.tokens_per_param=20", "...")


# --------------------------------------------------------------------------------------
# design.md and sweeps.md


def test_sweep_points_by_hand_and_by_the_sbatch_task_command(tmp_path):
    configs = tmp_path / "user_configs"
    write_sweep(configs)  # `tiny`: llama/1m x adamw x 1024 and 1536 tokens (2 and 3 steps)
    env = cli_env(tmp_path, OPTLAW_EXTRA_CONFIGS=str(configs))
    # sweeps.md's usage line with NAME -> tiny, launcher=local, PATH -> sw, --dry-run, and one key of each
    # kind: sweep.seeds=[0], launcher.max_parallel=1 and a train key, step_cost.repeats=1 (every point's).
    usage = ("optlaw sweep sweep=tiny launcher=local sweep_dir=sw --dry-run sweep.seeds=[0] launcher.max_parallel=1 "
             "step_cost.repeats=1")
    plan = run_command(usage, tmp_path, env=env).stdout
    assert plan.startswith("sweep tiny: 2 points in sw (manifest.json written)")
    sweep_dir = tmp_path / "sw"
    first, second = json.loads((sweep_dir / "manifest.json").read_text())["points"]
    assert "step_cost.repeats=1" in first["overrides"]

    # design.md: what a launcher runs for a point; <overrides>, <sweep_dir>, <run_id> -> the first point's.
    command = (SWEEP_POINT.replace("<overrides>", shlex.join(first["overrides"]))
               .replace("<sweep_dir>", "sw").replace("<run_id>", first["run_id"]))
    run_command(command, tmp_path, env=env)
    record = records.read_record(sweep_dir / first["run_dir"])
    assert record.status == "done" and record.run_id == first["run_id"]  # the sweep's id, recomputed

    # sweeps.md: what an sbatch array task runs; SWEEP_DIR -> sw, $SLURM_ARRAY_TASK_ID -> 1 (also set in the
    # environment, as SLURM does).
    command = SWEEP_JOB.replace("SWEEP_DIR", "sw").replace("$SLURM_ARRAY_TASK_ID", "1")
    run_command(command, tmp_path, env={**env, "SLURM_ARRAY_TASK_ID": "1"})
    assert records.read_record(sweep_dir / second["run_dir"]).status == "done"
    assert not list((sweep_dir / "claims").glob("*.json"))  # released once finished

    # `optlaw status [SWEEP_DIR]`: SWEEP_DIR -> sw, and without it from inside the sweep directory.
    for command, cwd in ((STATUS_USAGE.replace("[SWEEP_DIR]", "sw"), tmp_path),
                         (STATUS_USAGE.replace(" [SWEEP_DIR]", ""), sweep_dir)):
        out = run_command(command, cwd, env=env).stdout
        assert out.rstrip().endswith("2 points: 2 done, 0 diverged, 0 failed, 0 running, 0 pending"), command
    # The usage line again, launching: both points are finished, so nothing runs.
    out = run_command(usage.replace(" --dry-run", ""), tmp_path, env=env).stdout
    assert "nothing to run" in out and "start " not in out


def test_python_m_optlaw_is_the_console_script(tmp_path):
    # design.md: `python -m optlaw` is the console script (torchrun starts it that way): same usage, same commands.
    usage = run_command(PYTHON_M_OPTLAW, tmp_path).stdout
    assert usage.startswith("usage: optlaw <command>") and usage == run_command("optlaw --help", tmp_path).stdout
    out = run_command(PYTHON_M_OPTLAW, tmp_path, ["train", "--cfg", "job", "model=llama/3m"]).stdout
    assert "size: 3m" in out and not (tmp_path / "runs").exists()


def test_slurm_cluster_script_runs_as_typed():
    # `scripts/slurm_cluster.sh start` is typed without `bash`: the script must be executable with a
    # bash shebang, and parse. (Starting a cluster installs and runs daemons: the SLURM tests do that.)
    script = REPO_ROOT / "scripts" / "slurm_cluster.sh"
    assert os.access(script, os.X_OK) and script.read_text().startswith("#!/usr/bin/env bash\n")
    assert run_command(f"bash -n {script}", REPO_ROOT).returncode == 0
    assert re.search(r"^\s*start\)", script.read_text(), re.M)


# --------------------------------------------------------------------------------------
# fitting.md


def _usage_options(usage: str) -> dict[str, str | None]:
    """--option -> the value the usage line shows after it (None for a flag)."""
    shown: dict[str, str | None] = {}
    for option, value in re.findall(r"(--[a-z][a-z-]*)(?: ([^\s\[\]|-][^\s\]]*(?:\|[^\s\]]+)*))?", usage):
        shown[option] = value or None
    return shown


def test_fit_usage_matches_the_parser():
    from optlaw.entry.fit_cmd import build_parser

    actions = {opt: a for a in build_parser()._actions for opt in a.option_strings if opt.startswith("--")}
    actions.pop("--help")
    shown = _usage_options(FIT_USAGE)
    assert set(shown) == set(actions), set(shown) ^ set(actions)
    for option, value in shown.items():
        action = actions[option]
        if value is None:
            assert action.nargs == 0, option  # a flag
        elif action.choices:
            assert set(value.split("|")) == set(action.choices), option
        elif not re.fullmatch(r"[A-Z][A-Z_:./=\[\]]*", value):  # not a placeholder: the default
            assert value.split("|")[0] == str(action.default), option


def test_fit_usage_options_no_example_shows(reference_data, tmp_path, capsys):
    from optlaw.entry import cli

    # The usage line with --csv FILE -> the Marin CSV (its --column mapping), DIR -> tmp_path/out, and the
    # options none of the README/docs commands use; no bootstrap or plots, to take a second.
    marin = reference_data / "marin_fantastic_optimizers_final_losses.csv"
    argv = ["fit", "--csv", str(marin), "--column", "optimizer=optimizer_canonical", "--column", "N=N_nonembed",
            "--column", "D=D_tokens", "--column", "loss=loss_c4_en", "--out", str(tmp_path / "out"),
            "--variant", "rho_D", "--objective", "squared", "--seeds", "mean", "--seed", "1",
            "--wandb-group", "unused_without_wandb", "--bootstrap", "0", "--holdout", "none", "--no-plots"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    doc = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert (doc["variant"], doc["objective"], doc["bootstrap_replicates"]) == ("rho_D", "squared", 0)
    assert all(o["rho_N"] == pytest.approx(1.0) for o in doc["optimizers"].values())  # rho_D only
    assert not list((tmp_path / "out").glob("*.png"))


def test_fitting_examples_are_the_readmes():
    # fitting.md's two CSV examples are the README's (run by tests/test_readme_commands.py) but for --out.
    from test_readme_commands import FIT_CHINCHILLA, FIT_MARIN

    def without_out(command: str) -> str:
        return re.sub(r" --out \S+", "", command)

    assert without_out(FIT_CHINCHILLA_DOCS) == without_out(FIT_CHINCHILLA)
    assert without_out(FIT_MARIN_DOCS) == without_out(FIT_MARIN)


# --------------------------------------------------------------------------------------
# optimizers.md


def test_bench_optim_on_a_small_model(tmp_path):
    # The full comparison takes ~3.5 minutes. Shrunk: llama/100k, a batch of 2, one round of 10 steps,
    # and Shampoo's implementations only (besides AdamW); run from the repository root, as written.
    before = {p.name for p in REPO_ROOT.iterdir()}
    shrink = ["--model", "llama/100k", "--batch", "2", "--rounds", "1", "--only", "Shampoo"]
    out = run_command(BENCH_OPTIM, REPO_ROOT, shrink, env=cli_env(tmp_path)).stdout
    assert {p.name for p in REPO_ROOT.iterdir()} == before, "the benchmark wrote into the repository"
    assert out.startswith("model llama/100k") and "1 interleaved rounds x 10 steps" in out
    # Ratios depend on the machine (bf16 native or emulated): the output names it.
    assert re.search(r"^machine: CPU .+ flags .+; torch \S+ \(CPU capability \w+\), 1 threads; load average ", out, re.M), out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    algorithms = {row[0].strip() for row in rows[1:]}
    assert algorithms == {"AdamW", "Shampoo"}
    optlaw_shampoo = next(row for row in rows if row[1].strip().startswith("optlaw (grafted"))
    assert float(optlaw_shampoo[-1]) > 0  # its step time relative to the fastest peer library


def test_bench_optim_muon_on_a_small_model(tmp_path):
    # The Muon-only run of docs/benchmarks.md, shrunk: llama/100k, a batch of 2, one round of 10 steps.
    shrink = ["--model", "llama/100k", "--batch", "2", "--rounds", "1"]
    out = run_command(BENCH_OPTIM_MUON, REPO_ROOT, shrink, env=cli_env(tmp_path)).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert {row[0].strip() for row in rows[1:]} == {"AdamW", "Muon"}
    # The probe's pick is named in the row and explained above the table (with its times).
    auto = next(row for row in rows if row[1].strip().startswith("optlaw (batched; ns_dtype auto = "))
    assert float(auto[-1]) > 0
    assert re.search(r"^muon\.ns_dtype: (float32|bfloat16) \(probe: float32 [\d.]+ ms, bfloat16 [\d.]+ ms", out, re.M), out
