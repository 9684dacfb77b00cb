"""Grid expansion, run identity, manifest and bad-input errors of `optlaw sweep` (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optlaw.config import compose, to_plain
from optlaw.errors import ConfigError, UserError
from optlaw.entry.sweep_cmd import main_status, main_sweep
from optlaw.sweep.grid import expand
from optlaw.sweep.manifest import read_manifest

TINY = """\
name: {name}
task: llm
models: [llama/1m]
optimizers: [adamw]
seeds: {seeds}
tokens_per_param: null
tokens: {tokens}
extra_axes: {{}}
optimizer_axes: {optimizer_axes}
fixed:
  device: cpu
  batch.global_tokens: 512
  batch.micro_batch_size: 4
  eval.tokens: 1024
  eval.fractions: []
branching: {{enabled: false, decay_fraction: 0.2, warmup_tokens: null}}
"""


def write_sweep(config_root: Path, name: str = "tiny", seeds="[0]", tokens="[1024, 1536]", optimizer_axes="{}") -> None:
    (config_root / "sweep").mkdir(parents=True, exist_ok=True)
    text = TINY.format(name=name, seeds=seeds, tokens=tokens, optimizer_axes=optimizer_axes)
    (config_root / "sweep" / f"{name}.yaml").write_text(text)


@pytest.fixture
def user_configs(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "user_configs"
    write_sweep(root)
    monkeypatch.setenv("OPTLAW_EXTRA_CONFIGS", str(root))
    return root


def definition(name="tiny", **fields) -> dict:
    base = {
        "name": name, "task": "llm", "models": ["llama/1m"], "optimizers": ["adamw"], "seeds": [0],
        "tokens_per_param": None, "tokens": [2048, 3072], "extra_axes": {}, "optimizer_axes": {},
        "fixed": {"device": "cpu", "batch.global_tokens": 512, "batch.micro_batch_size": 4},
        "branching": {"enabled": False},
    }
    base.update(fields)
    return base


def test_ids_are_stable_and_equal_to_the_trainers():
    from optlaw.train.identity import run_id

    first = expand(definition())
    second = expand(definition())
    assert [p.run_id for p in first] == [p.run_id for p in second]
    assert len({p.run_id for p in first}) == 2
    for point in first:
        assert point.run_id == run_id(to_plain(compose("train", point.overrides)))
        assert point.tokens in (2048.0, 3072.0)
        assert point.flops and point.flops > 6 * point.non_embedding_params * point.tokens * 0.99


def test_grid_is_the_product_of_axes_with_per_optimizer_axes():
    points = expand(definition(seeds=[0, 1], optimizer_axes={"adamw": {"optimizer.lr_mult": [0.5, 2.0]}}))
    assert len(points) == 2 * 2 * 2
    assert {p.axes["optimizer.lr_mult"] for p in points} == {0.5, 2.0}


def test_tuning_points_are_told_apart_by_their_lr_multiplier_in_the_run_id():
    points = expand(definition(tokens=[2048], optimizer_axes={"adamw": {"optimizer.lr_mult": [0.5, 1.0, 2.0]}}))
    labels = sorted(p.run_id.rsplit("-", 1)[0] for p in points)
    assert labels == ["llama-1m-adamw-2p05ktok-s0", "llama-1m-adamw-2p05ktok-s0-lr0p5",
                      "llama-1m-adamw-2p05ktok-s0-lr2"], labels


def test_generic_optimizer_classes_are_two_points_named_by_class():
    points = expand(definition(tokens=[2048], optimizers=["adamw", "generic"], optimizer_axes={
        "generic": {"optimizer.cls": ["torch.optim.NAdam", "torch_optimizer.Lamb"]}}))
    labels = sorted(p.run_id.rsplit("-", 1)[0] for p in points)
    assert labels == ["llama-1m-adamw-2p05ktok-s0", "llama-1m-generic-NAdam-2p05ktok-s0",
                      "llama-1m-generic-torch_optimizer_Lamb-2p05ktok-s0"], labels


def test_tokens_per_param_range_keeps_the_diagonal_band_and_branches_within_it():
    tiny = {"device": "cpu", "batch.global_tokens": 1024, "batch.micro_batch_size": 16, "data": "facts"}
    full = expand(definition(models=["llama/7k", "llama/75k"], tokens=[65536, 524288, 2097152], fixed=tiny))
    band = expand(definition(models=["llama/7k", "llama/75k"], tokens=[65536, 524288, 2097152], fixed=tiny,
                             tokens_per_param_range=[5, 80], branching={"enabled": True, "warmup_tokens": 8192}))
    ratios = sorted(p.tokens / p.non_embedding_params for p in band)
    assert len(full) == 6 and len(band) == 4 and 5 <= ratios[0] and ratios[-1] <= 80
    # 7k keeps 65k (9.7) and 524k (78); 75k keeps 524k (7.1) and 2M (28): each pair branches off its own trunk
    trunks = {p.label: p for p in band if p.extra.get("branch_trunk")}
    assert sorted(int(p.tokens) for p in trunks.values()) == [524288, 2097152]
    with pytest.raises(ConfigError, match="tokens_per_param_range must be"):
        expand(definition(tokens_per_param_range=[80, 5]))
    with pytest.raises(ConfigError, match="no point has tokens per parameter"):
        expand(definition(tokens_per_param_range=[1e6, 2e6]))


def test_empty_axis_is_an_empty_grid_error():
    with pytest.raises(ConfigError, match="axis 'seeds' is an empty list"):
        expand(definition(seeds=[]))


def test_axis_value_naming_no_config():
    with pytest.raises(ConfigError, match=r"unknown model 'llama/7t'"):
        expand(definition(models=["llama/1m", "llama/7t"]))


def test_both_budget_axes_refused():
    with pytest.raises(ConfigError, match="both 'tokens_per_param' and 'tokens'"):
        expand(definition(tokens_per_param=[20]))


def test_manifest_D_is_the_trainers_plan_whole_steps_only():
    from optlaw.models import model_stats
    from optlaw.train.budget import plan_budget

    # 2100 tokens at 512 per step: the trainer runs 4 steps (2048 tokens) and records D = 2048.
    (point,) = expand(definition(tokens=[2100]))
    cfg = compose("train", point.overrides)
    stats = model_stats(cfg.model)
    assert point.tokens == plan_budget(cfg, stats.n_total, stats.n_non_embedding).tokens_trained == 2048
    assert point.flops == pytest.approx(2048 * stats.flops_per_token)


def test_a_point_that_cannot_train_is_refused_when_the_sweep_is_planned():
    bad = definition(fixed={"device": "cpu", "batch.global_tokens": 512})  # 512 < 128 x 16 tokens per micro-batch
    with pytest.raises(ConfigError, match=r"^sweep tiny, point llama_1m-adamw-s0-tok2048: batch.global_tokens=512 "
                                          r"is not a multiple") as info:
        expand(bad)
    assert "\n" not in str(info.value)


def test_proxy_points_are_named_by_the_entry_layer():
    from optlaw.entry.points import POINT_NAMING
    from optlaw.proxy.point import run_id as proxy_run_id

    quadratic = definition(task="quadratic", models=None, optimizers=None, seeds=None, tokens=None, fixed={},
                           extra_axes={"N": [32, 64]})
    with pytest.raises(ConfigError, match="task=quadratic points are named by the entry layer"):
        expand(quadratic)
    points = expand(quadratic, naming=POINT_NAMING)
    assert [p.run_id.split("-")[:3] for p in points] == [["quadratic", "gd", "s1_5"]] * 2
    for point in points:
        assert point.run_id == proxy_run_id(to_plain(compose("task_quadratic", point.overrides)))
        assert point.tokens is None and point.flops is None


def test_dry_run_writes_manifest_and_plan(user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    assert main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    manifest = read_manifest(sweep_dir)
    assert [p["tokens"] for p in manifest["points"]] == [1024.0, 1536.0]
    for point in manifest["points"]:
        assert point["run_id"] in out
        assert point["run_dir"] == f"runs/{point['run_id']}"
    assert "2 points" in out and "GPU-hours" in out and "already finished: 0" in out
    assert not (sweep_dir / "runs").exists()  # a dry run trains nothing
    ids = [p["run_id"] for p in manifest["points"]]
    assert main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"]) == 0
    assert [p["run_id"] for p in read_manifest(sweep_dir)["points"]] == ids


def test_sweep_dir_of_another_definition_is_refused(user_configs, tmp_path):
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"])
    with pytest.raises(UserError, match=r"different sweep definition; differing keys: seeds"):
        main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "sweep.seeds=[0,1]", "--dry-run"])
    with pytest.raises(UserError, match=r"cli_overrides"):
        main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "train.grad_clip=0.5", "--dry-run"])


def test_bad_command_lines(user_configs, tmp_path):
    with pytest.raises(UserError, match="name the sweep"):
        main_sweep([f"sweep_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="unknown sweep 'nope'"):
        main_sweep(["sweep=nope", f"sweep_dir={tmp_path / 'x'}", "--dry-run"])
    with pytest.raises(ConfigError, match="does not exist"):
        main_sweep(["sweep=tiny", f"sweep_dir={tmp_path / 'y'}", "no_such_key=1", "--dry-run"])
    with pytest.raises(UserError, match="no manifest.json"):
        main_status([str(tmp_path / "empty")])


def test_status_of_a_fresh_sweep(user_configs, tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    main_sweep(["sweep=tiny", f"sweep_dir={sweep_dir}", "--dry-run"])
    capsys.readouterr()
    assert main_status([str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 points: 0 done, 0 diverged, 0 failed, 0 running, 2 pending" in out
    # An interrupted record (status running, no live owner) is resumable: pending, with a note.
    point = read_manifest(sweep_dir)["points"][0]
    run_dir = sweep_dir / point["run_dir"]
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": point["run_id"], "task": "llm", "status": "running"}))
    main_status([str(sweep_dir)])
    assert "interrupted; resumes from its last checkpoint" in capsys.readouterr().out


def test_slurm_resources_follow_model_size_and_several_gpus_use_torchrun(tmp_path):
    from optlaw.sweep.job import train_command
    from optlaw.sweep.slurm import resources_for

    launcher = compose(None, ["+launcher=slurm"]).launcher
    table = to_plain(launcher)
    assert resources_for(table, 1e6)["gpus_per_node"] == 1
    assert resources_for(table, 5e8)["gpus_per_node"] == 4
    assert resources_for(table, 1e11)["gpus_per_node"] == 8  # the open-ended last row
    with pytest.raises(ConfigError, match="no launcher.resources row"):
        resources_for({"resources": [{"max_params": 1e6}]}, 2e6)
    point = {"run_id": "p", "run_dir": "runs/p", "overrides": ["model=llama/1m"]}
    argv = train_command(tmp_path, point, {"sweep": "s"}, gpus=4)
    assert argv[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert argv[-3:] == ["model=llama/1m", f"run_dir={(tmp_path / 'runs/p').resolve()}", "sweep_name=s"]
    assert "torch.distributed.run" not in train_command(tmp_path, point, {"sweep": "s"}, gpus=1)


@pytest.mark.slow
def test_points_derived_from_a_composed_neighbour_equal_points_composed_one_by_one():
    # A grid composes once per config-group choice (model, optimizer) and derives the leaf axes (budget,
    # seed) from that config (optlaw.sweep.grid.derive_point): run ids, overrides, resolved configs and
    # budget plans must be those of a Hydra compose per point. On a slice of the demo's grid.
    from optlaw.entry.points import POINT_NAMING
    from optlaw.entry.sweep_cmd import SweepRequest, composed
    from optlaw.sweep.grid import axis_combinations, checked_sweep, fixed_overrides, make_point

    definition, _ = composed(SweepRequest(sweep="demo", overrides=(
        "sweep.models=[llama/7k,llama/14k,llama/40k]", "sweep.optimizers=[muon]", "sweep.seeds=[0,1]")))
    sweep = checked_sweep(definition, POINT_NAMING)
    fixed = fixed_overrides(sweep, ["optimizer.lr_mult=2.0"])
    combos = axis_combinations(sweep)
    anchors: list = []
    derived = [make_point(sweep.name, axes, fixed, POINT_NAMING, like=anchors) for axes in combos]
    assert len(anchors) == 3 and len(derived) == 3 * 4 * 2  # one compose per (model, optimizer)
    for axes, point in zip(combos, derived):
        alone = make_point(sweep.name, axes, fixed, POINT_NAMING)
        assert (point.run_id, point.overrides, point.axes) == (alone.run_id, alone.overrides, alone.axes)
        assert to_plain(point.cfg) == to_plain(alone.cfg)
        assert (point.plan, point.tokens, point.flops) == (alone.plan, alone.tokens, alone.flops)


def test_a_leaf_axis_that_a_later_override_sets_is_composed_not_derived():
    # A fixed override of an axis key wins over the axis in Hydra; derivation would get it backwards.
    from optlaw.sweep.grid import make_point

    fixed = ["task=llm", "device=cpu", "budget.tokens=1024", "batch.global_tokens=512", "batch.micro_batch_size=4",
             "seed=7"]
    anchors: list = []
    first = make_point("t", {"model": "llama/1m", "seed": 0}, fixed, like=anchors)
    second = make_point("t", {"model": "llama/1m", "seed": 1}, fixed, like=anchors)
    assert len(anchors) == 2 and first.cfg.seed == second.cfg.seed == 7 and first.run_id == second.run_id
