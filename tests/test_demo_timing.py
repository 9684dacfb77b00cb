"""scripts/research/demo_timing.py (README "The demo"): a demo's wall time against its points' training times."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_timing_sums_the_records_training_times(tmp_path):
    # The README's command, run on a stand-in optlaw-demo/sweep with three records.
    sweep = tmp_path / "optlaw-demo" / "sweep"
    for run_id, source, wall in (("a", "tuned", 100.0), ("b", "tuned", 50.0), ("c", "predicted", 250.0)):
        (sweep / "runs" / run_id).mkdir(parents=True)
        (sweep / "runs" / run_id / "run.json").write_text(json.dumps(
            {"run_id": run_id, "wall_time_s": wall, "tuning": {"source": source}}))
    out = subprocess.run([sys.executable, str(ROOT / "scripts/research/demo_timing.py"), "optlaw-demo/sweep", "1136"],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    out = " ".join(out.split())  # the columns' padding aside
    assert "predicted 1 points 250.0 s training" in out
    assert "tuned 2 points 150.0 s training" in out
    assert "all 3 points 400.0 s training; demo wall 1136.0 s" in out
    assert "wall / sum = 2.840 (perfect packing: 0.50); wall x 2 / sum = 5.680 (target <= 1.25)" in out
