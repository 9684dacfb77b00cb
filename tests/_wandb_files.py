"""Read offline W&B run files back through W&B's own reader (`wandb leet inspect --json`,
the transaction-log reader that ships in the wandb SDK's wandb-core), one dict per record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_files(wandb_dir: Path) -> list[Path]:
    """Every offline run's ``.wandb`` file under ``wandb_dir``, oldest first."""
    return sorted(Path(wandb_dir).rglob("offline-run-*/run-*.wandb"))


def read_run_file(path: Path) -> list[dict]:
    """The records of one ``.wandb`` file, in order (``{"num", "type", <type>: {...}}``)."""
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


class RunFile:
    """The parts of a run file the tests look at."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records = read_run_file(self.path)
        runs = [r["run"] for r in self.records if r["type"] == "run"]
        assert runs, f"{path} has no run record"
        self.run = runs[0]
        self.metrics = [r["metric"] for r in self.records if r["type"] == "metric"]
        self.history = [r["history"]["item"] for r in self.records if r["type"] == "history"]
        self.summary: dict = {}
        for r in self.records:
            if r["type"] == "summary":
                self.summary.update(r["summary"].get("update", {}))
        self.artifacts = [r["artifact"] for r in self.records if r["type"] == "artifact"]
        self.exit = next((r["exit"] for r in self.records if r["type"] == "exit"), None)

    @property
    def exit_code(self) -> int | None:
        """The run's exit code; None when the file holds no exit record (the run never finished).
        Protobuf's JSON leaves out fields at their zero value (a runtime of 0 s, an exit code of 0)."""
        return None if self.exit is None else int(self.exit.get("exit_code", 0))

    def metric_definition(self, name: str) -> dict | None:
        """The define_metric record of a name or glob."""
        return next((m for m in self.metrics if m.get("name") == name or m.get("glob_name") == name), None)

    def logged_keys(self) -> set[str]:
        """Every key logged to history, W&B's own (``_step``, ``_runtime``, ...) left out."""
        return {k for item in self.history for k in item if not k.startswith("_")}
