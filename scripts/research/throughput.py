"""Research: CPU seconds per optimizer step of tiny LLaMAs on the facts corpus, one thread.

Each (width, optimizer) runs through the real trainer in this process at two step counts;
the difference of their process CPU times over the difference of steps is the CPU cost of a
step (contention from other jobs inflates wall time, not CPU time), and the intercept is the
fixed in-process cost of a point (build, floor, eval, step-cost timing).
"""
from __future__ import annotations

import sys
import time

sys.path.insert(0, "scripts/research")
from inproc import run_point  # noqa: E402


def tiny(d: int, layers: int = 2, head_dim: int = 16, vocab: int = 128, seq_len: int = 64) -> list[str]:
    ffn = max(16, 16 * round(8 / 3 * d / 16))
    return [f"model.d_model={d}", f"model.n_layers={layers}", f"model.n_heads={d // head_dim}",
            f"model.n_kv_heads={d // head_dim}", f"model.head_dim={head_dim}", f"model.ffn_hidden={ffn}",
            f"model.vocab_size={vocab}", f"model.seq_len={seq_len}", "data=facts", f"data.vocab_size={vocab}"]


if __name__ == "__main__":
    out = sys.argv[1]
    widths = [int(w) for w in sys.argv[2].split(",")]
    opts = sys.argv[3].split(",")
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    lo, hi = 40, 240
    for d in widths:
        for opt in opts:
            cpu = {}
            for steps in (lo, hi):
                ov = tiny(d) + [f"optimizer={opt}", f"budget.tokens={steps * batch}", f"batch.global_tokens={batch}",
                                f"batch.micro_batch_size={batch // 64}", "eval.tokens=16384", "eval.fractions=[]",
                                f"run_dir=/tmp/dr_tp/{d}-{opt}-{batch}-{time.time_ns()}"]
                row = run_point(ov, out, tag=f"tp d{d} {opt} b{batch} s{steps}")
                cpu[steps] = row["cpu_s"]
            per_step = (cpu[hi] - cpu[lo]) / (hi - lo)
            print(f"RESULT d={d} {opt} batch={batch} cpu_per_step={per_step * 1e3:.2f}ms "
                  f"fixed={cpu[lo] - lo * per_step:.2f}s", flush=True)
