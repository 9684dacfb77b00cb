"""Real text: tokenized once into memory-mapped shards, batches as pure functions.

Layout of a cache entry ``<cache_dir>/tokens/<key>/`` (key = hash of corpus content,
tokenizer content and split rule): ``train_000.bin ...`` and ``val.bin`` (raw uint16 when
the vocabulary fits, else uint32; documents joined by EOS), ``tokenizer.json`` when trained,
and ``meta.json``, written last: an entry without it is unfinished and gets rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optlaw.config import as_config
from optlaw.config.data import TextDataConfig
from optlaw.data.keys import mix, train_block_keys
from optlaw.data.sources import DocumentSource
from optlaw.data.tokenizer import TextTokenizer, load_tokenizer, train_bpe
from optlaw.errors import ConfigError, UserError
from optlaw.jsonio import write_json_atomic

CACHE_FORMAT = 1  # bump when the on-disk layout changes, so old entries are not misread
_VAL_SPLIT_DOMAIN = 3
_ENCODE_CHUNK_DOCS = 512


def default_cache_dir() -> Path:
    return Path(os.environ.get("OPTLAW_CACHE_DIR", Path.home() / ".cache" / "optlaw")) / "data"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class TextCorpus:
    """Memory-mapped token shards with a fixed held-out validation split."""

    entropy_floor_nats = None  # unknown for real text

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.meta = json.loads((self.directory / "meta.json").read_text())
        self.name = "text"
        self.vocab_size = int(self.meta["vocab_size"])
        self.eos_id = int(self.meta["eos_id"])
        dtype = np.dtype(self.meta["dtype"])
        self.train_shards = [np.memmap(self.directory / f, dtype=dtype, mode="r") for f in self.meta["train_shards"]]
        self.val_tokens = np.memmap(self.directory / "val.bin", dtype=dtype, mode="r")
        self.train_tokens = int(sum(len(s) for s in self.train_shards))

    def train_batch(self, seed: int, step: int, micro: int, rank: int, world_size: int, micro_batch_size: int, seq_len: int) -> torch.Tensor:
        """Windows of seq_len + 1 tokens at offsets drawn from the sequence keys.

        Offsets are uniform over every start position of every shard (with replacement), so a
        batch needs no loader state and never depends on how the global batch is split.
        """
        window = seq_len + 1
        starts = np.array([max(0, len(s) - window + 1) for s in self.train_shards], dtype=np.int64)
        total = int(starts.sum())
        if total <= 0:
            raise UserError(f"the training split ({self.train_tokens} tokens) is shorter than one sequence of {window}; use more data or a shorter model.seq_len")
        keys = train_block_keys(seed, [step], micro, rank, world_size, micro_batch_size)[0]
        offsets = (keys % np.uint64(total)).astype(np.int64)
        shard_ends = np.cumsum(starts)
        shard = np.searchsorted(shard_ends, offsets, side="right")
        local = offsets - (shard_ends[shard] - starts[shard])
        rows = [np.asarray(self.train_shards[s][o:o + window], dtype=np.int64) for s, o in zip(shard, local)]
        return torch.from_numpy(np.stack(rows))

    def val_batches(self, n_tokens: int, batch_size: int, seq_len: int) -> Iterator[torch.Tensor]:
        n_seq = max(1, math.ceil(n_tokens / seq_len))
        needed = n_seq * seq_len + 1
        if needed > len(self.val_tokens):
            raise UserError(
                f"evaluation asks for {n_seq * seq_len} validation tokens but the held-out split has {len(self.val_tokens) - 1}; "
                f"lower eval.tokens or raise data.val_tokens"
            )
        for start in range(0, n_seq, batch_size):
            stop = min(n_seq, start + batch_size)
            rows = [np.asarray(self.val_tokens[i * seq_len:i * seq_len + seq_len + 1], dtype=np.int64) for i in range(start, stop)]
            yield torch.from_numpy(np.stack(rows))


def build_text_corpus(data_cfg: Any, cache_dir: str | None = None) -> TextCorpus:
    """Tokenize (once, cached by content hash) and open the corpus described by ``data_cfg``
    (a TextDataConfig, its composed node or a plain dict); ``cache_dir`` wins over data.cache_dir."""
    cfg = as_config(TextDataConfig, data_cfg, "data")
    root = Path(cache_dir or cfg.cache_dir or default_cache_dir()).expanduser()
    val_tokens, val_fraction = cfg.val_tokens, cfg.val_fraction
    tokenizer_spec = cfg.tokenizer
    bpe_vocab = cfg.tokenizer_vocab_size
    shard_tokens = cfg.shard_tokens
    eos_token = cfg.eos_token

    source = DocumentSource(cfg)
    tokenizer: TextTokenizer | None = None
    if tokenizer_spec == "train":
        tokenizer_id = f"bpe{bpe_vocab}-{source.content_hash[:16]}"
    else:
        tokenizer = load_tokenizer(tokenizer_spec, eos_token)
        tokenizer_id = tokenizer.content_hash
    split_rule = f"val_tokens={val_tokens}|val_fraction={val_fraction}|shard_tokens={shard_tokens}"
    key = hashlib.sha256(f"{CACHE_FORMAT}|{source.content_hash}|{tokenizer_id}|{split_rule}".encode()).hexdigest()[:20]
    entry = root / "tokens" / key
    if (entry / "meta.json").is_file():
        return TextCorpus(entry)

    root.mkdir(parents=True, exist_ok=True)
    (root / "tokens").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root / "tokens"))
    os.chmod(work, 0o755)  # mkdtemp makes it private; a shared cache should be readable by all
    try:
        if tokenizer is None:
            tokenizer = train_bpe(iter(source), bpe_vocab, work / "tokenizer.json", length=source.n_documents)
        _tokenize_into(work, source, tokenizer, val_tokens, val_fraction, shard_tokens)
        meta = json.loads((work / "meta.json").read_text())
        meta.update(key=key, content_hash=source.content_hash, tokenizer_hash=tokenizer_id,
                    tokenizer=tokenizer.source if tokenizer_spec != "train" else str(entry / "tokenizer.json"))
        write_json_atomic(work / "meta.json", meta)
        try:
            os.replace(work, entry)  # atomic: readers see no entry or a finished one
        except OSError:  # another process finished the same entry first; use theirs
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return TextCorpus(entry)


def _tokenize_into(work: Path, source: DocumentSource, tokenizer: TextTokenizer, val_tokens, val_fraction, shard_tokens: int) -> None:
    """Tokenize every document into one stream, then split whole documents into val and train."""
    from tqdm.auto import tqdm

    dtype = token_dtype(tokenizer.vocab_size)
    doc_lengths: list[int] = []
    stream_path = work / "all.bin"
    with open(stream_path, "wb") as out, tqdm(total=source.n_documents, unit="doc", desc="tokenizing", mininterval=1.0) as bar:
        chunk: list[str] = []

        def flush() -> None:
            for ids in tokenizer.encode_batch(chunk):
                ids = list(ids) + [tokenizer.eos_id]  # EOS ends every document
                out.write(np.asarray(ids, dtype=dtype).tobytes())
                doc_lengths.append(len(ids))
            bar.update(len(chunk))
            chunk.clear()

        for doc in source:
            chunk.append(doc)
            if len(chunk) >= _ENCODE_CHUNK_DOCS:
                flush()
        if chunk:
            flush()
    if not doc_lengths:
        raise UserError("data: the corpus has no non-empty documents; check data.files / data.dataset and data.text_field")
    lengths = np.asarray(doc_lengths, dtype=np.int64)
    total = int(lengths.sum())
    target = int(val_tokens) if val_tokens is not None else int(round(float(val_fraction) * total))
    # Held-out documents: a fixed pseudo-random order of documents (not the first ones, which
    # often come from one file), taken until the target is met.
    order = np.argsort(mix(_VAL_SPLIT_DOMAIN, np.arange(len(lengths), dtype=np.uint64)), kind="stable")
    taken = np.searchsorted(np.cumsum(lengths[order]), target) + 1
    is_val = np.zeros(len(lengths), dtype=bool)
    is_val[order[:taken]] = True
    if is_val.all():
        raise UserError(f"the held-out split ({target} tokens) would take the whole corpus ({total} tokens); lower data.val_tokens / data.val_fraction or add data")
    stream = np.memmap(stream_path, dtype=dtype, mode="r")
    ends = np.cumsum(lengths)
    starts = ends - lengths
    with open(work / "val.bin", "wb") as fh:
        for i in np.flatnonzero(is_val):
            fh.write(stream[starts[i]:ends[i]].tobytes())
    shards: list[str] = []
    shard_fh, shard_len = None, 0
    for i in np.flatnonzero(~is_val):
        if shard_fh is None or shard_len >= shard_tokens:
            if shard_fh:
                shard_fh.close()
            shards.append(f"train_{len(shards):03d}.bin")
            shard_fh, shard_len = open(work / shards[-1], "wb"), 0
        shard_fh.write(stream[starts[i]:ends[i]].tobytes())
        shard_len += int(lengths[i])
    shard_fh.close()
    del stream
    stream_path.unlink()
    val_count = int(lengths[is_val].sum())
    write_json_atomic(work / "meta.json", {
        "format": CACHE_FORMAT, "dtype": dtype.name, "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id,
        "documents": len(lengths), "val_documents": int(is_val.sum()), "train_tokens": total - val_count,
        "val_tokens": val_count, "train_shards": shards,
    })
