"""Benchmark (not a test): optlaw's shared-law fit with 1000 bootstrap replicates against
Hoffmann et al.'s multi-start L-BFGS (the 4,500-start grid) on the same ~150 points.

Usage: .venv/bin/python scripts/bench/bench_fit.py [--csv FILE] [--hoffmann-starts K] [--bootstrap R] [--rounds K]

Data: the Marin optimizers CSV from ../shared/reference-data (150 points, 11 optimizers,
25 parameters in the shared law), or synthetic runs when it is absent. Both methods
minimise the same objective (Huber, delta 1e-3, on log loss, summed) in one process, side
by side, interleaved (see main). Both wall-clock and process CPU time are printed: on a machine shared with other
work the wall-clock ratio moves with the load, the CPU-time ratio much less (BLAS threads
are pinned to 1 so both sides run on one core). With --hoffmann-starts K < 4500, K starts spread evenly over the grid are timed
and the time is scaled by 4500 / K (printed as such); its objective is then the best of K.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")   # before numpy loads: one core each side, CPU times comparable

import numpy as np  # noqa: E402

from optlaw.fit import fit_shared, load_csv  # noqa: E402
from optlaw.fit import solver  # noqa: E402
from optlaw.fit.laws import _problem, _shared_structure  # noqa: E402
from optlaw.fit.synthetic import synthetic_table  # noqa: E402
from optlaw.machine import describe  # noqa: E402

MARIN = Path(__file__).resolve().parents[3] / "shared" / "reference-data" / "marin_fantastic_optimizers_final_losses.csv"
MARIN_COLUMNS = {"optimizer": "optimizer_canonical", "N": "N_nonembed", "D": "D_tokens", "loss": "loss_c4_en"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=str(MARIN))
    parser.add_argument("--hoffmann-starts", type=int, default=4500)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10,
                        help="Hoffmann's starts run in this many slices, one timed optlaw fit before each (median used)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if Path(args.csv).is_file():
        table, source = load_csv(args.csv, MARIN_COLUMNS), Path(args.csv).name
    else:
        table, source = synthetic_table(seed=0, noise=0.004, seeds_per_cell=2), "synthetic (150 runs)"
    reference = "adamw"
    order = [reference] + [o for o in table.optimizers if o != reference]
    problem = _problem(table, _shared_structure(table, order, reference, "full"), "huber_log")
    n_params = 2 + problem.structure.n_coef
    print(f"data: {source}, {len(table)} points, {len(order)} optimizers, shared law with {n_params} parameters")
    print(f"machine: {describe()}; numpy {np.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")

    # Interleaved, as bench_optim's rounds: Hoffmann's starts are cut into ROUNDS evenly spread
    # slices, and optlaw's fit is timed once before each slice. On this shared virtual machine the
    # same work was measured 83-121 s (Hoffmann) and 0.8-1.1 s (optlaw) minutes apart, so two
    # back-to-back blocks compare two machine states; interleaved, both sides sample the same ones.
    # optlaw's time is the median of its ROUNDS fits; the process's first fit (one-time costs: lazy
    # imports, first-touch memory) is timed and printed apart. Every fit runs from scratch.
    grid = solver.hoffmann_grid()
    k = min(args.hoffmann_starts, len(grid))
    starts = grid[np.linspace(0, len(grid) - 1, k).round().astype(int)]
    rounds = max(1, min(args.rounds, k))

    def timed(run):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        return out, time.perf_counter() - t0, time.process_time() - c0

    fit, first_s, first_cpu = timed(lambda: fit_shared(table, reference=reference, bootstrap=args.bootstrap, seed=0))
    fits, hoff_parts, hoff_s, hoff_cpu = [], [], 0.0, 0.0
    for i in range(rounds):
        fit, t, c = timed(lambda: fit_shared(table, reference=reference, bootstrap=args.bootstrap, seed=0))
        fits.append((t, c))
        part, t, c = timed(lambda: solver.hoffmann_lbfgs(problem, starts[i::rounds]))
        hoff_parts.append(part)
        hoff_s, hoff_cpu = hoff_s + t, hoff_cpu + c
    hoff = min(hoff_parts, key=lambda sol: sol.objective_value)
    hoff_s, hoff_cpu = hoff_s * len(grid) / k, hoff_cpu * len(grid) / k
    ours_s, ours_cpu = float(np.median([t for t, _ in fits])), float(np.median([c for _, c in fits]))
    ours_obj = fit.solves[None].objective_value

    scaled = "" if k == len(grid) else f" (measured on {k} of {len(grid)} starts, scaled by {len(grid) / k:.0f})"
    print(f"optlaw global solve + {args.bootstrap} honest bootstrap replicates: {ours_s:.2f} s "
          f"(CPU {ours_cpu:.2f} s), median of {rounds} fits interleaved with Hoffmann's slices "
          f"({min(t for t, _ in fits):.2f}-{max(t for t, _ in fits):.2f} s); the process's first fit {first_s:.2f} s "
          f"(CPU {first_cpu:.2f} s); objective {ours_obj:.10g}")
    print(f"Hoffmann multi-start L-BFGS, {len(grid)} starts, no bootstrap: {hoff_s:.1f} s (CPU {hoff_cpu:.1f} s)"
          f"{scaled}, in {rounds} interleaved slices, objective {hoff.objective_value:.10g}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"speed ratio (Hoffmann / optlaw): wall {hoff_s / ours_s:.0f}x, CPU {hoff_cpu / ours_cpu:.0f}x "
          f"(against the process's first fit: wall {hoff_s / first_s:.0f}x, CPU {hoff_cpu / first_cpu:.0f}x); "
          f"objective ratio (optlaw / Hoffmann): {ours_obj / hoff.objective_value:.8f} (<= 1 is no worse)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
