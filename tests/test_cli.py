import pytest

from optlaw import config
from optlaw.entry import cli
from optlaw.errors import ConfigError


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "sweep", "status", "fit", "proxy", "demo"):
        assert name in out


def test_unknown_command(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_unknown_key_is_one_line_error():
    with pytest.raises(ConfigError, match="budget.nonsense") as info:
        config.compose("train", ["budget.nonsense=3"])
    assert "\n" not in str(info.value)


def test_unknown_group_option_names_choices():
    with pytest.raises(ConfigError, match="unknown model 'llama/999m'") as info:
        config.compose("train", ["model=llama/999m"])
    assert "llama/1m" in str(info.value)


# --------------------------------------------------------------------------------------
# Hydra habits: --cfg job prints the resolved config; a multirun points to `optlaw sweep`


def _no_compute(monkeypatch):
    from optlaw.entry import sweep_cmd, train_cmd

    def refuse(*_args, **_kwargs):
        raise AssertionError("--cfg job must not compute")

    monkeypatch.setattr(train_cmd, "run_point", refuse)
    monkeypatch.setattr(sweep_cmd, "expand", refuse)


def test_train_cfg_job_prints_the_resolved_config_and_trains_nothing(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.chdir(tmp_path)
    _no_compute(monkeypatch)
    overrides = ["model=llama/3m", "optimizer=muon", "budget.tokens=4096", "eval.tokens=8192"]
    for flag in (["--cfg", "job"], ["--cfg=job"], ["-c", "job"], ["--cfg", "job", "--resolve"]):
        assert cli.main(["train", *flag, *overrides]) == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed == config.to_plain(config.compose("train", overrides))
        assert printed["data"]["seq_len"] == printed["model"]["seq_len"]  # ${model.seq_len}, resolved
        assert printed["data"]["val_tokens"] == 8192
    # Proxy tasks print their own root config.
    assert cli.main(["train", "--cfg", "job", "task=quadratic", "N=64"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == config.to_plain(config.compose("task_quadratic", ["task=quadratic", "N=64"]))
    assert list(tmp_path.iterdir()) == []  # no run directory, no outputs


def test_sweep_cfg_job_prints_the_definition_and_writes_no_manifest(tmp_path, monkeypatch, capsys):
    import yaml

    _no_compute(monkeypatch)
    sweep_dir = tmp_path / "sw"
    args = ["sweep", "sweep=smoke", "--cfg", "job", f"sweep_dir={sweep_dir}", "sweep.seeds=[0,1]",
            "launcher.max_parallel=3", "optimizer.lr_mult=0.5"]
    assert cli.main(args) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["sweep"]["name"] == "smoke" and printed["sweep"]["seeds"] == [0, 1]
    assert printed["sweep"]["cli_overrides"] == ["optimizer.lr_mult=0.5"]
    assert printed["launcher"]["max_parallel"] == 3 and printed["sweep_dir"] == str(sweep_dir)
    assert not sweep_dir.exists()


def test_cfg_other_than_job_is_a_one_line_error(capsys):
    assert cli.main(["train", "--cfg", "hydra"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --cfg hydra") and "--cfg job" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, shown, equivalent", [
    (["train", "optimizer=adamw,muon", "model=llama/1m"], "optimizer=adamw,muon",
     "optlaw sweep sweep=grid 'sweep.optimizers=[adamw,muon]' model=llama/1m"),
    (["train", "-m", "optimizer=adamw,muon"], "optimizer=adamw,muon",
     "optlaw sweep sweep=grid 'sweep.optimizers=[adamw,muon]'"),
    (["train", "--multirun", "model=llama/1m"], "--multirun", "optlaw sweep sweep=grid model=llama/1m"),
    (["train", "seed=range(0,2)", "batch.global_tokens=2048,4096", "run_dir=/tmp/r"],
     "seed=range(0,2) batch.global_tokens=2048,4096",
     "optlaw sweep sweep=grid 'sweep.seeds=[0,1]' '++sweep.extra_axes={batch.global_tokens:[2048,4096]}' "
     "sweep_dir=/tmp/r"),
    (["train", "task=quadratic", "N=32,64"], "N=32,64",
     "optlaw sweep sweep=grid sweep.task=quadratic '++sweep.extra_axes={N:[32,64]}'"),
    (["sweep", "sweep=smoke", "optimizer=choice(adamw,muon)", "--dry-run"], "optimizer=choice(adamw,muon)",
     "optlaw sweep sweep=smoke 'sweep.optimizers=[adamw,muon]' --dry-run"),
    (["sweep", "sweep=smoke", "sweep.seeds=0,1"], "sweep.seeds=0,1", "optlaw sweep sweep=smoke 'sweep.seeds=[0,1]'"),
])
def test_multirun_syntax_is_a_one_line_error_showing_the_sweep(argv, shown, equivalent, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {shown} is Hydra multirun syntax; ") and err.count("\n") == 1, err
    assert err.rstrip("\n").endswith(f": {equivalent}"), err


def test_multirun_with_no_list_of_values_says_so(capsys):
    assert cli.main(["train", "schedule.warmup_fraction=interval(0,0.1)"]) == 2
    assert "no finite list of values" in capsys.readouterr().err
    assert cli.main(["sweep", "sweep=smoke", "launcher.max_parallel=1,2"]) == 2
    assert "launcher.max_parallel takes one value" in capsys.readouterr().err


def test_the_sweep_shown_for_a_multirun_runs_the_same_points(tmp_path, capsys):
    import shlex

    from optlaw.entry.points import run_id
    from optlaw.sweep.manifest import read_manifest

    fixed = ["device=cpu", "budget.tokens=4096", "batch.global_tokens=2048", "batch.micro_batch_size=4"]
    assert cli.main(["train", "optimizer=adamw,muon", "seed=0,1", *fixed]) == 2
    shown = shlex.split(capsys.readouterr().err.strip().rsplit(": ", 1)[1])
    assert shown[:2] == ["optlaw", "sweep"]
    sweep_dir = tmp_path / "sw"
    assert cli.main([*shown[1:], f"sweep_dir={sweep_dir}", "--dry-run"]) == 0
    manifest_ids = sorted(p["run_id"] for p in read_manifest(sweep_dir)["points"])
    single_points = sorted(run_id(config.to_plain(config.compose("train", [f"optimizer={o}", f"seed={s}", *fixed])))
                           for o in ("adamw", "muon") for s in (0, 1))
    assert manifest_ids == single_points
