import copy
import dataclasses
import enum
import json
import math
import shutil
from pathlib import Path

import pytest

from optlaw import jsonio, records


def test_run_id_ignores_non_semantic_keys_and_tracks_semantic_ones():
    base = {"seed": 0, "model": {"family": "llama"}, "run_dir": "/a", "wandb": {"mode": "offline"},
            "batch": {"global_tokens": 8, "micro_batch_size": 2}}
    moved = {**base, "run_dir": "/b", "wandb": {"mode": "disabled"}, "batch": {"global_tokens": 8, "micro_batch_size": 4}}
    reseeded = {**base, "seed": 1}
    assert records.make_run_id(base, "x") == records.make_run_id(moved, "x")
    assert records.make_run_id(base, "x") != records.make_run_id(reseeded, "x")
    assert records.make_run_id(base, "llama 1m/adamw").startswith("llama_1m_adamw-")


def test_atomic_write_and_iter(tmp_path):
    records.write_record(tmp_path / "a", records.LLMRunRecord(run_id="a", task="llm", status=records.DONE, final_val_loss=1.5))
    records.write_record(tmp_path / "b", records.ProxyRunRecord(run_id="b", task="quadratic", status=records.RUNNING))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "run.json").write_text("{torn")
    found = dict((p.name, r) for p, r in records.iter_json(tmp_path))
    assert set(found) == {"a", "b", "c"}
    assert records.RunRecord.from_json(found["a"]).schema_version == records.SCHEMA_VERSION
    assert isinstance(found["c"], records.CorruptRecord) and str(tmp_path / "c" / "run.json") in str(found["c"])
    assert not list(tmp_path.glob("a/.run.json*"))
    assert json.loads((tmp_path / "a" / "run.json").read_text())["final_val_loss"] == 1.5


# --- the typed record and its versions -------------------------------------------------------------

V1 = Path(__file__).parent / "data" / "run_records_v1"  # real records written by optlaw before schema 2
# FIT_FIELDS as the untyped schema 1 listed them by hand.
V1_FIT_FIELDS = (
    "run_id", "task", "status", "optimizer", "family", "size", "seed",
    "N", "N_total", "N_non_embedding", "D", "tokens_trained", "flops",
    "final_val_loss", "step_cost_ratio", "wall_time_s", "reason", "hyperparameters", "sweep", "branch",
)


def v1_documents() -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(V1.glob("*/run.json"))}


def test_fit_fields_are_the_fields_the_class_marks():
    marked = tuple(f.name for f in dataclasses.fields(records.RunRecord) if f.metadata.get("fit"))
    assert records.FIT_FIELDS == marked
    # Schema 1's list, plus the version a reader needs to read the rest.
    assert set(records.FIT_FIELDS) == set(V1_FIT_FIELDS) | {"schema_version"}
    assert records.SCHEMA_VERSION == 2


def test_every_task_has_its_record_class():
    from optlaw.config.proxy import POINT_SCHEMAS

    assert records.record_class("llm") is records.LLMRunRecord
    assert {task: records.record_class(task) for task in POINT_SCHEMAS} == dict.fromkeys(POINT_SCHEMAS, records.ProxyRunRecord)
    assert records.record_class("from-a-newer-optlaw") is records.RunRecord  # read as the common fields


def test_real_version_1_records_read_through_the_upgrade():
    documents = v1_documents()
    assert set(documents) == {"llm_adamw_done", "llm_adamw_diverged", "llm_generic_nadam_done", "llm_generic_lamb_done",
                              "quadratic_done", "quadratic_failed", "random_features_done"}
    for name, v1 in documents.items():
        assert v1["schema_version"] == 1
        untouched = copy.deepcopy(v1)
        upgraded = records.upgrade(v1)
        assert v1 == untouched and upgraded["schema_version"] == 2  # a new dict; the input is left alone
        record = records.read_record(V1 / name)
        assert type(record) is records.record_class(v1["task"]) and record.schema_version == 2
        assert record.status == v1["status"] and isinstance(record.status, records.Status)
        # Field names and meanings stay: every field of the v1 file is in the record with its value,
        # except the optimizer of a generic run, now named by its class.
        written = record.to_json()
        for key, value in v1.items():
            if key in ("schema_version", "optimizer"):
                continue
            assert written[key] == value, (name, key)
        expected = {"llm_generic_nadam_done": "generic-NAdam", "llm_generic_lamb_done": "generic-torch_optimizer.Lamb"}
        assert record.optimizer == expected.get(name, v1["optimizer"]), name


def test_version_1_run_ids_are_recomputed_from_their_configs():
    from optlaw.entry.points import run_id

    for name, v1 in v1_documents().items():
        recomputed = run_id(v1["config"])
        if v1["optimizer"] == "generic":  # the label names the class now; the hash of the config is the same
            label = records.optimizer_name(v1["config"]["optimizer"]).replace(".", "_")
            assert recomputed == v1["run_id"].replace("-generic-", f"-{label}-"), name
        else:
            assert recomputed == v1["run_id"], name


def test_the_fit_reads_version_1_records_and_keeps_generic_classes_apart(tmp_path):
    from optlaw.fit import load_runs

    table = load_runs(V1)
    assert table.optimizers == ["adamw", "generic-NAdam", "generic-torch_optimizer.Lamb", "kron", "ngd"]
    assert len(table) == 5 and table.tuning == []
    assert {(r["status"], r["optimizer"]) for r in table.excluded} == {("diverged", "adamw"), ("failed", "gd")}


def test_version_1_wandb_summaries_read_like_records():
    # The trainer mirrored the fit fields to W&B without a schema_version under schema 1.
    v1 = v1_documents()["llm_adamw_done"]
    summary = {key: v1[key] for key in V1_FIT_FIELDS} | {"_runtime": 3.2, "train_loss": 6.9}
    record = records.RunRecord.from_json(summary)
    assert type(record) is records.LLMRunRecord and record.final_val_loss == v1["final_val_loss"]
    assert record.fit_fields() == {**{key: v1[key] for key in V1_FIT_FIELDS}, "schema_version": 2}


def test_round_trip_and_the_config_is_written_last(tmp_path):
    record = records.read_record(V1 / "llm_adamw_done")
    records.write_record(tmp_path, record)
    assert records.read_record(tmp_path) == record
    assert list(json.loads((tmp_path / "run.json").read_text()))[-1] == "config"


def test_what_is_not_a_record_is_a_one_line_error_and_the_fit_lists_it(tmp_path):
    newer = json.loads((V1 / "quadratic_done" / "run.json").read_text()) | {"schema_version": 3}
    with pytest.raises(records.RecordError, match="newer optlaw .*schema_version 3"):
        records.RunRecord.from_json(newer)
    with pytest.raises(records.RecordError, match="status 'finished' is not one of running, done, diverged, failed"):
        records.RunRecord.from_json({"run_id": "x", "task": "llm", "status": "finished"})
    wrong_type = json.loads((V1 / "llm_adamw_done" / "run.json").read_text()) | {"N": "10k"}
    with pytest.raises(records.RecordError, match="field N is '10k', not a number or null"):
        records.RunRecord.from_json(wrong_type)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "run.json").write_text(json.dumps({"status": "done", "loss": 1.0}))
    with pytest.raises(records.RecordError, match=r"odd/run.json: corrupt, not a run record: it lacks run_id, task") as info:
        records.read_record(tmp_path / "odd")
    assert "\n" not in str(info.value)
    from optlaw.fit import load_runs

    shutil.copytree(V1 / "quadratic_done", tmp_path / "good")
    table = load_runs(tmp_path)
    assert len(table) == 1 and [r["reason"] for r in table.excluded] == ["not a run record: it lacks run_id, task"]
    for name, content in DAMAGED.items():  # unreadable files are excluded by path, as corrupt
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_bytes(content)
    table = load_runs(tmp_path)
    corrupt = {r["run_id"]: r["reason"] for r in table.excluded if r["status"] == records.CORRUPT}
    assert set(corrupt) == set(DAMAGED) - {"wrong_types"}
    assert all(str(tmp_path / name / "run.json") in reason for name, reason in corrupt.items())


# --- jsonio: the one plainer ---------------------------------------------------------------------------

class Colour(enum.StrEnum):
    RED = "red"


@dataclasses.dataclass
class Pair:
    left: tuple
    right: Path


def test_plain_turns_every_value_optlaw_writes_into_json_types():
    import numpy as np
    import torch

    value = {1: np.float32(1.5), "i": np.int64(3), "b": np.bool_(True), "t": (1, torch.Size([2, 3])),
             "e": Colour.RED, "p": Path("/a/b"), "d": Pair((1, 2), Path("x")), "s": torch.tensor(2.5),
             "a": np.arange(4).reshape(2, 2), "nan": float("nan"), "inf": np.float64("inf")}
    out = jsonio.plain(value)
    assert out["1"] == 1.5 and type(out["i"]) is int and out["b"] is True and out["t"] == [1, [2, 3]]
    assert out["e"] == "red" and type(out["e"]) is str and out["p"] == "/a/b"
    assert out["d"] == {"left": [1, 2], "right": "x"} and out["s"] == 2.5 and out["a"] == [[0, 1], [2, 3]]
    assert math.isnan(out["nan"]) and out["inf"] == math.inf
    strict = jsonio.plain(value, finite_only=True)
    assert strict["nan"] is None and strict["inf"] is None
    json.dumps(strict, allow_nan=False)  # strict JSON
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        jsonio.plain({"x": object()})


def test_write_json_atomic_plains_first_and_leaves_no_temp_file(tmp_path):
    import numpy as np

    jsonio.write_json_atomic(tmp_path / "a.json", {"x": np.int64(2)})
    with pytest.raises(TypeError):
        jsonio.write_json_atomic(tmp_path / "a.json", {"x": object()})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


# --- damaged files: listed as corrupt by path, never a traceback, never "missing" ----------------

DAMAGED = {
    "not_utf8": b'{"run_id": "x", "task": "llm", "status": "done\xff\xfe"}',
    "json_list": b'[1, 2, 3]',
    "truncated": b'{"run_id": "x", "task": "llm", "sta',
    "empty": b"",
    "wrong_types": b'{"run_id": "x", "task": "llm", "status": "done", "final_val_loss": "low"}',
}


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_a_damaged_record_is_corrupt_by_path(tmp_path, kind):
    (tmp_path / "run.json").write_bytes(DAMAGED[kind])
    with pytest.raises(records.CorruptRecord, match=str(tmp_path / "run.json")):
        records.read_record(tmp_path)
    assert records.read_status(tmp_path) == records.CORRUPT
    kept = records.set_aside_corrupt(tmp_path)
    assert kept.read_bytes() == DAMAGED[kind] and not (tmp_path / "run.json").exists()
    assert records.read_status(tmp_path) == "missing"


def test_a_newer_record_is_not_called_corrupt(tmp_path):
    (tmp_path / "run.json").write_text('{"run_id": "x", "task": "llm", "status": "done", "schema_version": 99}')
    with pytest.raises(records.RecordError, match="newer optlaw") as err:
        records.read_record(tmp_path)
    assert not isinstance(err.value, records.CorruptRecord)
    assert records.set_aside_corrupt(tmp_path) is None
