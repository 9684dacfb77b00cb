import json

from optlaw import records


def test_run_id_ignores_non_semantic_keys_and_tracks_semantic_ones():
    base = {"seed": 0, "model": {"family": "llama"}, "run_dir": "/a", "wandb": {"mode": "offline"},
            "batch": {"global_tokens": 8, "micro_batch_size": 2}}
    moved = {**base, "run_dir": "/b", "wandb": {"mode": "disabled"}, "batch": {"global_tokens": 8, "micro_batch_size": 4}}
    reseeded = {**base, "seed": 1}
    assert records.make_run_id(base, "x") == records.make_run_id(moved, "x")
    assert records.make_run_id(base, "x") != records.make_run_id(reseeded, "x")
    assert records.make_run_id(base, "llama 1m/adamw").startswith("llama_1m_adamw-")


def test_atomic_write_and_iter(tmp_path):
    records.write_record(tmp_path / "a", {"status": records.DONE, "final_val_loss": 1.5})
    records.write_record(tmp_path / "b", {"status": records.RUNNING})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "run.json").write_text("{torn")
    found = dict((p.name, r) for p, r in records.iter_records(tmp_path))
    assert set(found) == {"a", "b"}
    assert found["a"]["schema_version"] == records.SCHEMA_VERSION
    assert not list(tmp_path.glob("a/.run.json*"))
    assert json.loads((tmp_path / "a" / "run.json").read_text())["final_val_loss"] == 1.5
