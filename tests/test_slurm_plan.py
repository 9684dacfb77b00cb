"""SLURM job planning without a cluster: time limits from FLOPs, packing, the multi-node command."""

from __future__ import annotations

import pytest

from optlaw.config.sweep import ResourceRow, SlurmLauncherConfig
from optlaw.sweep.slurm import first_node, multinode_command
from optlaw.sweep.slurm_plan import format_minutes, parse_slurm_minutes, plan_jobs, round_up_minutes


def _manifest(flops: list[float]) -> dict:
    return {"sweep": "s", "points": [
        {"run_id": f"p{i}", "run_dir": f"runs/p{i}", "flops": f, "non_embedding_params": 1e6, "tokens": 1e6,
         "overrides": ["model=llama/1m", f"budget.tokens={1000 + i}"]}
        for i, f in enumerate(flops)
    ]}


def _launcher(**fields) -> SlurmLauncherConfig:
    base = dict(throughput_flops_per_s=1e12, time_margin=2.0,
                resources=[ResourceRow(max_params=None, gpus_per_node=1, cpus_per_task=4)])
    base.update(fields)
    return SlurmLauncherConfig(**base)


def test_time_limit_follows_planned_flops_with_margin_and_partition_cap():
    minute = 1e12 * 60  # FLOPs one GPU does in a minute at the assumed throughput
    manifest = _manifest([3 * minute, 40 * minute, 400 * minute])
    groups = plan_jobs(manifest, ["p0", "p1", "p2"], _launcher(), lambda p: False)
    # 3 min x 2 -> 6 -> 10; 40 x 2 -> 80 -> 90; 400 x 2 -> 800 -> 1080.
    assert sorted(g.time_min for g in groups) == [10, 90, 1080]
    capped = plan_jobs(manifest, ["p0", "p1", "p2"], _launcher(), lambda p: False, partition_limit_min=60)
    assert sorted(g.time_min for g in capped) == [10, 60]  # the two long points share the capped class
    # Twice the GPUs, half the time.
    two = _launcher(resources=[ResourceRow(max_params=None, gpus_per_node=2, cpus_per_task=4)])
    assert [g.time_min for g in plan_jobs(_manifest([40 * minute]), ["p0"], two, lambda p: False)] == [45]
    fixed = _launcher(resources=[ResourceRow(max_params=None, gpus_per_node=1, cpus_per_task=4, time_min=77)])
    assert [g.time_min for g in plan_jobs(manifest, ["p0"], fixed, lambda p: False)] == [77]


def test_small_points_are_packed_up_to_pack_minutes_and_big_ones_run_alone():
    minute = 1e12 * 60
    manifest = _manifest([1 * minute, 2 * minute, 3 * minute, 4 * minute, 50 * minute])  # x2 margin: 2, 4, 6, 8, 100
    groups = plan_jobs(manifest, [f"p{i}" for i in range(5)], _launcher(pack_minutes=12), lambda p: False)
    packs = sorted((pack for g in groups for pack in g.packs), key=len)
    assert packs == [["p4"], ["p3"], ["p0", "p1", "p2"]]
    by_pack = {tuple(pack): g.time_min for g in groups for pack in g.packs}
    assert by_pack[("p0", "p1", "p2")] == 15  # 2 + 4 + 6 = 12 minutes, rounded up
    # Without pack_minutes every point is its own job; multi-GPU points are never packed.
    assert all(len(p) == 1 for g in plan_jobs(manifest, ["p0", "p1"], _launcher(), lambda p: False) for p in g.packs)
    multi = _launcher(pack_minutes=12, resources=[ResourceRow(max_params=None, gpus_per_node=4, cpus_per_task=4)])
    assert all(len(p) == 1 for g in plan_jobs(manifest, ["p0", "p1"], multi, lambda p: False) for p in g.packs)


def test_branches_waiting_for_their_trunk_go_in_a_later_array():
    manifest = _manifest([1e12, 1e12])
    groups = plan_jobs(manifest, ["p0", "p1"], _launcher(pack_minutes=60), lambda p: p["run_id"] == "p0")
    assert [(g.waits_for_trunk, g.packs) for g in groups] == [(False, [["p1"]]), (True, [["p0"]])]


@pytest.mark.parametrize("text,minutes", [("infinite", None), ("30", 30), ("1:30:00", 90), ("2-00:00:00", 2880),
                                          ("1-12", 2160), ("00:10:30", 11)])
def test_slurm_time_formats(text, minutes):
    assert parse_slurm_minutes(text) == minutes


def test_minute_steps_and_format():
    assert [round_up_minutes(m) for m in (0.01, 5, 5.1, 61, 6000)] == [5, 5, 10, 90, 6000]
    assert format_minutes(90) == "01:30:00" and format_minutes(2880) == "2-00:00:00"


def test_multinode_command_is_torchrun_with_a_rendezvous_on_the_first_node(tmp_path):
    manifest = _manifest([1e12])
    env = {"SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242", "SLURM_NODEID": "1"}
    argv = multinode_command(tmp_path, manifest["points"][0], manifest, gpus=8, nodes=2, python="py", environ=env)
    head = first_node("gpu[07-08]")
    assert head == "gpu07"  # from scontrol where present, else parsed: the same first host
    assert argv[:3] == ["py", "-m", "torch.distributed.run"]
    assert "--nnodes=2" in argv and "--nproc_per_node=8" in argv and "--node_rank=1" in argv
    assert "--rdzv_backend=c10d" in argv and f"--rdzv_endpoint={head}:29500" in argv and "--rdzv_id=4242" in argv
    tail = argv[argv.index("-m", 3):]
    assert tail[:3] == ["-m", "optlaw", "train"] and "model=llama/1m" in tail
    assert any(a.startswith("run_dir=") and a.endswith("runs/p0") for a in tail)


def test_dry_run_text_shows_parameters_and_the_sbatch_lines_submitit_writes(tmp_path):
    from optlaw.sweep.slurm import dry_run_text

    manifest = _manifest([1e12 * 60 * 3, 1e12 * 60 * 3, 1e12 * 60 * 100])
    launcher = _launcher(partition="gpu", account="proj", qos="high", array_parallelism=8, pack_minutes=20,
                         max_time_min=600,
                         resources=[ResourceRow(max_params=None, gpus_per_node=1, cpus_per_task=6, mem_gb=40)])
    text = dry_run_text(tmp_path, manifest, ["p0", "p1", "p2"], launcher)
    assert text.count("slurm array ") == 2
    assert ": 1 jobs, 2 points packed; partition=gpu account=proj qos=high nodes=1 " \
           "gpus_per_node=1 cpus_per_task=6 mem=40G time=00:15:00 array=0-0%1" in text
    assert "time=04:00:00 array=0-0%1" in text  # 100 min x 2 = 200 -> 240
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --qos=high", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --mem=40G", "#SBATCH --time=15", "#SBATCH --time=240",
                 "#SBATCH --signal=USR1@120", "#SBATCH --array=0-0%1"):
        assert line in text
    assert f"#SBATCH --output={tmp_path.resolve()}/slurm_logs/" in text  # logs in the sweep dir
