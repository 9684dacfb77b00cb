"""data=text: tokenize local files once into cached memmap shards; pure batches; clear errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from optlaw.config import compose
from optlaw.data import build_corpus, check_vocab_fits
from optlaw.data import text as text_module
from optlaw.data.text import token_dtype
from optlaw.errors import ConfigError, UserError

WORDS = "the cat sat on a mat while dogs ran over hills and rivers under bright stars".split()


def _write_jsonl(path, n_docs=400, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(n_docs):
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
            fh.write(json.dumps({"text": f"doc{seed}x{i} {body}", "id": i}) + "\n")
    return path


def _cfg(tmp_path, **over):
    cfg = dict(name="text", files=[str(tmp_path / "*.jsonl")], tokenizer="train", tokenizer_vocab_size=300,
               val_tokens=1000, text_field="text", cache_dir=str(tmp_path / "cache"))
    cfg.update(over)
    return cfg


@pytest.fixture
def jsonl_corpus(tmp_path):
    _write_jsonl(tmp_path / "part1.jsonl", seed=1)
    _write_jsonl(tmp_path / "part2.jsonl", seed=2)
    return tmp_path


def test_build_then_reuse_the_cache_without_retokenizing(jsonl_corpus, monkeypatch):
    corpus = build_corpus(_cfg(jsonl_corpus))
    assert corpus.vocab_size == 300 and corpus.entropy_floor_nats is None
    assert corpus.meta["dtype"] == "uint16" and corpus.meta["val_tokens"] >= 1000
    assert corpus.meta["documents"] == 800

    def refuse(*args, **kwargs):
        raise AssertionError("tokenized again although the cache holds this corpus")

    monkeypatch.setattr(text_module, "_tokenize_into", refuse)
    monkeypatch.setattr(text_module, "train_bpe", refuse)
    again = build_corpus(_cfg(jsonl_corpus))
    assert again.directory == corpus.directory
    # New content means a new cache entry (and here: an attempt to tokenize).
    _write_jsonl(jsonl_corpus / "part3.jsonl", n_docs=5, seed=3)
    with pytest.raises(AssertionError, match="tokenized again"):
        build_corpus(_cfg(jsonl_corpus))


def test_batches_are_pure_split_invariant_and_in_range(jsonl_corpus):
    corpus = build_corpus(_cfg(jsonl_corpus))
    x = corpus.train_batch(5, 3, 1, 0, 1, 4, 16)
    assert x.dtype == torch.long and x.shape == (4, 17)
    assert int(x.max()) < corpus.vocab_size
    assert torch.equal(x, build_corpus(_cfg(jsonl_corpus)).train_batch(5, 3, 1, 0, 1, 4, 16))
    assert not torch.equal(x, corpus.train_batch(6, 3, 1, 0, 1, 4, 16))
    single = torch.cat([corpus.train_batch(0, 9, m, 0, 1, 2, 16) for m in range(4)])
    two_ranks = torch.cat([corpus.train_batch(0, 9, m, r, 2, 2, 16) for m in range(2) for r in range(2)])
    assert torch.equal(single, two_ranks)
    # Every row is a real window of the training stream.
    stream = np.concatenate([np.asarray(s) for s in corpus.train_shards]).tolist()
    text = "," + ",".join(map(str, stream)) + ","
    for row in single.tolist():
        assert "," + ",".join(map(str, row)) + "," in text


def test_validation_split_is_fixed_whole_documents_disjoint_from_training(jsonl_corpus):
    from tokenizers import Tokenizer

    corpus = build_corpus(_cfg(jsonl_corpus))
    val = torch.cat(list(corpus.val_batches(512, 8, 16)))
    assert val.shape == (32, 17)
    assert torch.equal(val[:-1, -1], val[1:, 0])  # consecutive windows of one stream
    assert torch.equal(val, torch.cat(list(corpus.val_batches(512, 32, 16))))
    tokenizer = Tokenizer.from_file(corpus.meta["tokenizer"])
    decode = lambda tokens: tokenizer.decode(np.asarray(tokens).tolist(), skip_special_tokens=False)  # noqa: E731
    val_docs = {d.split()[0] for d in decode(corpus.val_tokens).split("<|endoftext|>") if d.strip()}
    train_docs = {d.split()[0] for s in corpus.train_shards for d in decode(s).split("<|endoftext|>") if d.strip()}
    assert len(val_docs) == corpus.meta["val_documents"]
    assert not val_docs & train_docs
    assert len(val_docs | train_docs) == 800  # no document is lost
    with pytest.raises(UserError, match="eval.tokens"):
        list(corpus.val_batches(10**6, 8, 16))


def test_txt_and_parquet_sources_and_val_fraction(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("first paragraph of text\nstill first\n\nsecond one here\n\n\nthird\n\n" * 50)
    pq.write_table(pa.table({"body": [f"row {i} " + " ".join(WORDS[: i % 10 + 3]) for i in range(300)]}), tmp_path / "b.parquet")
    txt = build_corpus(_cfg(tmp_path, files=[str(tmp_path / "a.txt")], val_tokens=None, val_fraction=0.1))
    assert txt.meta["documents"] == 150
    assert 0.1 <= txt.meta["val_tokens"] / (txt.meta["val_tokens"] + txt.meta["train_tokens"]) < 0.2
    par = build_corpus(_cfg(tmp_path, files=[str(tmp_path / "b.parquet")], text_field="body", val_tokens=300))
    assert par.meta["documents"] == 300


def test_local_tokenizer_file_and_uint32_for_large_vocabularies(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "<|endoftext|>": 1, **{f"w{i}": i + 2 for i in range(70000)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    rng = random.Random(0)
    with open(tmp_path / "docs.jsonl", "w") as fh:
        for _ in range(200):
            fh.write(json.dumps({"text": " ".join(f"w{rng.randrange(70000)}" for _ in range(30))}) + "\n")
    corpus = build_corpus(_cfg(tmp_path, tokenizer=str(tmp_path / "tokenizer.json"), val_tokens=500))
    assert corpus.vocab_size == 70002 and corpus.meta["dtype"] == "uint32" and corpus.eos_id == 1
    batch = corpus.train_batch(0, 0, 0, 0, 1, 8, 16)
    assert int(batch.max()) > 65535  # ids beyond uint16 survive the round trip
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_transformers_tokenizer_directory(jsonl_corpus):
    from transformers import PreTrainedTokenizerFast

    trained = build_corpus(_cfg(jsonl_corpus))
    directory = jsonl_corpus / "tok"
    PreTrainedTokenizerFast(tokenizer_file=trained.meta["tokenizer"], eos_token="<|endoftext|>").save_pretrained(directory)
    corpus = build_corpus(_cfg(jsonl_corpus, tokenizer=str(directory)))
    assert corpus.vocab_size == trained.vocab_size
    assert np.array_equal(np.asarray(corpus.val_tokens), np.asarray(trained.val_tokens))  # same ids, same split


def test_datasets_builder_on_local_files(jsonl_corpus, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", jsonl_corpus / "hf")
    corpus = build_corpus(_cfg(jsonl_corpus, dataset="json", files=[str(jsonl_corpus / "part1.jsonl")]))
    assert corpus.meta["documents"] == 400


def test_hydra_config_and_prepare_command(jsonl_corpus, capsys):
    from optlaw.entry.data_cmd import main

    overrides = ["data=text", f"data.files=[{jsonl_corpus}/part1.jsonl]", "data.tokenizer_vocab_size=300",
                 "data.val_tokens=1000", f"data.cache_dir={jsonl_corpus}/cache"]
    assert main(overrides) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["vocab_size"] == 300 and summary["documents"] == 400
    corpus = build_corpus(compose("train", overrides).data)
    assert str(corpus.directory) == summary["directory"]


def test_bad_input_gets_one_line_errors(jsonl_corpus):
    with pytest.raises(UserError, match="data.files"):
        build_corpus(_cfg(jsonl_corpus, files=[str(jsonl_corpus / "missing.jsonl")]))
    with pytest.raises(UserError, match="data.files"):
        build_corpus(_cfg(jsonl_corpus, files=[str(jsonl_corpus / "nothing*.jsonl")]))
    with pytest.raises(UserError, match="data.tokenizer"):
        build_corpus(_cfg(jsonl_corpus, tokenizer=str(jsonl_corpus / "no_tokenizer.json")))
    with pytest.raises(ConfigError, match="data.val_tokens"):
        build_corpus(_cfg(jsonl_corpus, val_fraction=0.1))
    with pytest.raises(UserError, match="data.text_field"):
        build_corpus(_cfg(jsonl_corpus, text_field="body"))
    with pytest.raises(UserError, match="data.val_tokens"):
        build_corpus(_cfg(jsonl_corpus, val_tokens=10**7))
    with pytest.raises(ConfigError, match="data.files"):
        build_corpus(_cfg(jsonl_corpus, files=[]))
    with pytest.raises(ConfigError, match="model.vocab_size=1024"):
        check_vocab_fits(50304, 1024)
    check_vocab_fits(1024, 1024)
    with pytest.raises(UserError) as info:
        build_corpus(_cfg(jsonl_corpus, tokenizer=str(jsonl_corpus / "none")))
    assert "\n" not in str(info.value)
