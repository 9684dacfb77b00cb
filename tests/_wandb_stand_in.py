"""A stand-in for ``wandb.Api()`` (no network here): each run's summary is its run record,
as the trainer mirrors the record's fit fields into the W&B summary."""

from __future__ import annotations


class StandInRun:
    def __init__(self, record: dict):
        self.id = record["run_id"]
        self.summary = dict(record)


class StandInApi:
    def __init__(self, runs: list[StandInRun]):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        group = (filters or {}).get("group")
        return [r for r in self._runs if group is None or r.summary.get("sweep") == group]
