"""Real corpora at scale: checks before tokenizing, a fixed-size held-out split, parallel
tokenizing with a bar, pre-tokenized .bin shards, and a cached corpus identity."""

from __future__ import annotations

import json
import os
import random
import sys

import numpy as np
import pytest

from optlaw.data import build_corpus
from optlaw.data import identity as identity_module
from optlaw.data import text as text_module
from optlaw.data.shards import HEADER_INTS
from optlaw.entry import cli
from optlaw.errors import ConfigError, UserError

sys.path.insert(0, os.path.dirname(__file__))
from test_data_text import _cfg, _write_jsonl  # noqa: E402


@pytest.fixture
def corpus_dir(tmp_path):
    _write_jsonl(tmp_path / "part1.jsonl", n_docs=600, seed=1)
    return tmp_path


def _refuse(*args, **kwargs):
    raise AssertionError("a pass over the data happened")


def test_vocabulary_is_checked_before_any_tokenizing(corpus_dir, monkeypatch, capsys):
    for name in ("_tokenize_into", "train_bpe", "DocumentSource"):
        monkeypatch.setattr(text_module, name, _refuse)
    with pytest.raises(ConfigError, match="model.vocab_size=256"):
        build_corpus(_cfg(corpus_dir, tokenizer_vocab_size=300), model_vocab_size=256)
    with pytest.raises(ConfigError, match="tokenizer_vocab_size=100 is too small"):
        build_corpus(_cfg(corpus_dir, tokenizer_vocab_size=100), model_vocab_size=256)
    # Through the command: one error line, exit 2, nothing tokenized.
    code = cli.main(["data", "data=text", f"data.files=[{corpus_dir}/part1.jsonl]", "data.tokenizer_vocab_size=2048",
                     "model.vocab_size=1024", f"data.cache_dir={corpus_dir}/cache"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: the corpus vocabulary has 2048 tokens but model.vocab_size=1024")
    assert err.count("\n") == 1 and not (corpus_dir / "cache" / "tokens").exists()


def test_held_out_split_is_a_fixed_token_count_of_whole_documents_with_a_warning(corpus_dir, capsys):
    corpus = build_corpus(_cfg(corpus_dir, val_tokens=2000))
    meta = corpus.meta
    target = text_module.val_target_tokens(2000)
    assert meta["val_target_tokens"] == target == 2000 + 100 + 1025
    # Whole documents until the target is met: at most one document over it.
    val = np.asarray(corpus.val_tokens)
    assert val[-1] == corpus.eos_id and int((val == corpus.eos_id).sum()) == meta["val_documents"]
    longest = 45 * 4  # a document has at most 41 words; a word is at most a few BPE tokens
    assert target <= meta["val_tokens"] < target + longest
    total = meta["val_tokens"] + meta["train_tokens"]
    assert meta["val_tokens"] / total > 0.10 and meta["warnings"]
    assert "warning: the held-out split is" in capsys.readouterr().err
    # A corpus large enough for its split gets no warning.
    for i in range(2, 6):
        _write_jsonl(corpus_dir / f"part{i}.jsonl", n_docs=600, seed=i)
    big = build_corpus(_cfg(corpus_dir, val_tokens=2000))
    assert big.meta["warnings"] == [] and "warning" not in capsys.readouterr().err


def test_parallel_tokenizing_gives_the_same_tokens_and_a_bar_with_total_and_eta(corpus_dir, capsys):
    one = build_corpus(_cfg(corpus_dir, num_proc=1, cache_dir=str(corpus_dir / "c1")))
    capsys.readouterr()
    tokenizer = one.meta["tokenizer"]
    two = build_corpus(_cfg(corpus_dir, tokenizer=tokenizer, num_proc=2, cache_dir=str(corpus_dir / "c2")))
    err = capsys.readouterr().err
    again = build_corpus(_cfg(corpus_dir, tokenizer=tokenizer, num_proc=1, cache_dir=str(corpus_dir / "c3")))
    for other in (one, again):  # 2 processes write exactly the tokens 1 process writes
        assert np.array_equal(np.asarray(two.val_tokens), np.asarray(other.val_tokens))
        assert [np.asarray(s).tolist() for s in two.train_shards] == [np.asarray(s).tolist() for s in other.train_shards]
    size = (corpus_dir / "part1.jsonl").stat().st_size
    bar = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("tokenizing (2 proc)")]
    assert bar and "100%" in bar[-1], err
    assert f"/{size / 1024:.0f}" in bar[-1] or f"/{size / 1024:.1f}" in bar[-1] or f"/{size / 1024:.2f}" in bar[-1], bar[-1]
    assert any("<" in line for line in bar)  # tqdm's [elapsed<remaining]: the ETA


def test_corpus_identity_is_cached_so_a_start_reads_no_data(corpus_dir, monkeypatch):
    first = build_corpus(_cfg(corpus_dir))
    monkeypatch.setattr(identity_module, "sha256_file", _refuse)
    assert build_corpus(_cfg(corpus_dir)).directory == first.directory  # size and mtime unchanged: no hashing
    path = corpus_dir / "part1.jsonl"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="a pass over the data"):
        build_corpus(_cfg(corpus_dir))  # touched: hashed again (and found unchanged)
    monkeypatch.undo()
    assert build_corpus(_cfg(corpus_dir)).directory == first.directory


# ----- pre-tokenized shards -----

def _nanogpt_shard(path, tokens, magic=20240520, version=1, dtype=np.uint16):
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = magic, version, len(tokens)
    with open(path, "wb") as fh:
        fh.write(header.tobytes())
        fh.write(np.asarray(tokens, dtype=dtype).tobytes())
    return path


def _tokens(n, vocab=1024, seed=0, eos=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(1, vocab, size=n)
    t[rng.random(n) < 0.02] = eos
    return t


def _tcfg(tmp_path, **over):
    cfg = dict(name="tokens", vocab_size=1024, val_tokens=1000, cache_dir=str(tmp_path / "cache"))
    cfg.update(over)
    return cfg


def test_nanogpt_and_raw_shards_and_folders_open_without_tokenizing(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "_tokenize_into", _refuse)
    folder = tmp_path / "fineweb"
    folder.mkdir()
    a, b = _tokens(20_000, seed=1), _tokens(30_000, seed=2)
    _nanogpt_shard(folder / "train_000.bin", a)
    _nanogpt_shard(folder / "train_001.bin", b)
    _nanogpt_shard(folder / "val.bin.val", _tokens(5_000, seed=3))  # not *.bin: not in the folder's shards
    corpus = build_corpus(_tcfg(tmp_path, files=[str(folder)], eos_id=0), model_vocab_size=1024)
    assert corpus.name == "tokens" and corpus.meta["formats"] == ["nanogpt:uint16"]
    assert np.array_equal(np.asarray(corpus.train_shards[0]), a)
    # Held-out tail of the last shard, starting after an EOS, at least the target long.
    tail = np.asarray(corpus.val_tokens)
    assert len(tail) >= text_module.val_target_tokens(1000) and b[len(b) - len(tail) - 1] == 0
    assert np.array_equal(np.concatenate([np.asarray(corpus.train_shards[1]), tail]), b)
    x = corpus.train_batch(0, 3, 0, 0, 1, 4, 32)
    assert x.shape == (4, 33) and int(x.max()) < 1024
    stream = np.concatenate([np.asarray(s) for s in corpus.train_shards]).tolist()
    text = "," + ",".join(map(str, stream)) + ","
    assert all("," + ",".join(map(str, row)) + "," in text for row in x.tolist())
    assert next(corpus.val_batches(64, 2, 32)).shape == (2, 33)

    # Separate validation shards; llm.c's uint32 header; plain .bin files of a stated dtype.
    val = _nanogpt_shard(tmp_path / "val_000.bin", _tokens(3_000, seed=4))
    with_val = build_corpus(_tcfg(tmp_path, files=[str(folder / "*.bin")], val_files=[str(val)]))
    assert len(with_val.train_shards[1]) == len(b) and len(with_val.val_tokens) == text_module.val_target_tokens(1000)
    big = _tokens(10_000, vocab=100_000, seed=5)
    _nanogpt_shard(tmp_path / "llama.bin", big, magic=20240801, version=7, dtype=np.uint32)
    c32 = build_corpus(_tcfg(tmp_path, files=[str(tmp_path / "llama.bin")], vocab_size=100_000))
    assert c32.meta["formats"] == ["nanogpt:uint32"] and int(np.asarray(c32.train_shards[0]).max()) > 65535
    big.astype(np.uint32).tofile(tmp_path / "raw32.bin")
    raw = build_corpus(_tcfg(tmp_path, files=[str(tmp_path / "raw32.bin")], vocab_size=100_000, dtype="uint32",
                             format="raw"))
    assert np.array_equal(np.concatenate([np.asarray(raw.train_shards[0]), np.asarray(raw.val_tokens)]), big)


def test_bad_shards_get_one_line_errors(tmp_path):
    good = _nanogpt_shard(tmp_path / "a.bin", _tokens(5000))
    with pytest.raises(ConfigError, match="model.vocab_size=512"):
        build_corpus(_tcfg(tmp_path, files=[str(good)]), model_vocab_size=512)
    np.arange(100, dtype=np.uint16).tofile(tmp_path / "raw.bin")
    with pytest.raises(UserError, match="data.dtype=uint16 or uint32"):
        build_corpus(_tcfg(tmp_path, files=[str(tmp_path / "raw.bin")]))
    with pytest.raises(ConfigError, match="data.format=raw needs data.dtype"):
        build_corpus(_tcfg(tmp_path, files=[str(tmp_path / "raw.bin")], format="raw"))
    with open(tmp_path / "cut.bin", "wb") as fh:
        fh.write(good.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated"):
        build_corpus(_tcfg(tmp_path, files=[str(tmp_path / "cut.bin")]))
    with pytest.raises(UserError, match="no .bin file matches"):
        build_corpus(_tcfg(tmp_path, files=[str(tmp_path / "none*.bin")]))
    with pytest.raises(UserError, match="fewer than the"):
        build_corpus(_tcfg(tmp_path, files=[str(good)], val_tokens=10_000))


def test_a_point_trains_on_nanogpt_shards(tmp_path):
    from optlaw.config import compose
    from optlaw.entry.points import run_point

    sys.path.insert(0, os.path.dirname(__file__))
    from _tiny_llm import TINY_LLM

    _nanogpt_shard(tmp_path / "s0.bin", _tokens(40_000, seed=7))
    record = run_point(compose("train", TINY_LLM + [
        "data=tokens", f"data.files=[{tmp_path}/s0.bin]", "data.vocab_size=1024", "data.eos_id=0",
        f"data.cache_dir={tmp_path}/cache", "batch.global_tokens=256", "budget.tokens=1024", "step_cost.repeats=0",
        f"run_dir={tmp_path}/run"]))
    assert record.status == "done" and record.final_val_loss > 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["data"]["name"] == "tokens"
