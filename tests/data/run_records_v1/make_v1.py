"""Made the schema-v1 run records in this folder, with optlaw at commit 84ab1d9 (before the typed record, schema 2).

Kept to show where the files came from; it runs only against that commit:
    WANDB_MODE=disabled python tests/data/run_records_v1/make_v1.py tests/data/run_records_v1
"""
import shutil, sys, json
from pathlib import Path
import torch
torch.set_num_threads(1)
from optlaw.config import compose, to_plain
from optlaw.entry.points import run_point
from optlaw.proxy import point

out = Path(sys.argv[1])
work = Path("/tmp/optlaw-v1-records")
shutil.rmtree(work, ignore_errors=True)
TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.n_kv_heads=2", "model.head_dim=16",
        "model.ffn_hidden=64", "model.seq_len=32", "batch.micro_batch_size=4", "eval.tokens=1024", "progress=false",
        "device=cpu", "batch.global_tokens=256", "step_cost.repeats=1", "budget.tokens=1024", "sweep_name=v1"]
runs = {
    "llm_adamw_done": ("train", TINY),
    "llm_generic_nadam_done": ("train", TINY + ["optimizer=generic", "optimizer.cls=torch.optim.NAdam"]),
    "llm_generic_lamb_done": ("train", TINY + ["optimizer=generic", "optimizer.cls=torch_optimizer.Lamb"]),
    "llm_adamw_diverged": ("train", TINY + ["budget.tokens=5120", "optimizer.lr_mult=3000", "schedule.warmup_fraction=0", "divergence.max_loss_ratio=1.5"]),
    "quadratic_done": ("task_quadratic", ["proxy_optimizer=kron", "N=64", "steps=32", "s=1.2", "feature_dim=4096", "irreducible_loss=0.05", "sweep_name=v1"]),
    "random_features_done": ("task_random_features", ["proxy_optimizer=ngd", "N=32", "steps=6", "input_dim=256", "sweep_name=v1"]),
}
for name, (root, overrides) in runs.items():
    run_point(compose(root, overrides + [f"run_dir={work / name}"]))
def boom(cfg):
    raise RuntimeError("linear algebra exploded")
point.solve_point = boom
try:
    point.run(to_plain(compose("task_quadratic", [f"run_dir={work / 'quadratic_failed'}", "sweep_name=v1"])))
except RuntimeError:
    pass
for rec in sorted(work.glob("*/run.json")):
    dest = out / rec.parent.name / "run.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(rec, dest)
    print(dest, json.loads(rec.read_text())["status"], json.loads(rec.read_text())["optimizer"])
