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
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optlaw.config import as_config
from optlaw.config.data import TextDataConfig
from optlaw.data.corpus import check_vocab_fits
from optlaw.data.identity import default_cache_dir
from optlaw.data.keys import mix, train_block_keys
from optlaw.data.sources import DocumentSource
from optlaw.data.tokenizer import TextTokenizer, check_bpe_vocab, load_tokenizer, train_bpe
from optlaw.errors import UserError
from optlaw.jsonio import write_json_atomic

CACHE_FORMAT = 2  # bump when the on-disk layout or the split rule changes, so old entries are not misread
_VAL_SPLIT_DOMAIN = 3
_ENCODE_CHUNK_DOCS = 512
# Below this many bytes of local files (or documents of a dataset) a corpus is tokenized in this
# process: starting spawned workers (~1-2 s each, more on a loaded machine) costs more than they save.
POOL_MIN_BYTES = 16 << 20
POOL_MIN_DOCUMENTS = 20_000
VAL_WARN_FRACTION = 0.10  # a held-out split above this share of the corpus gets a warning


def val_target_tokens(val_tokens: int) -> int:
    """Held-out tokens for ``val_tokens`` evaluation tokens: a margin of 1/20 plus 1025 covers the
    last partial sequence (evaluation reads ceil(eval.tokens / seq_len) sequences of seq_len + 1)
    for the usual seq_len <= eval.tokens / 20; documents are taken whole, so the split overshoots."""
    return int(val_tokens) + int(val_tokens) // 20 + 1025


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class MemmapCorpus:
    """Token arrays (memory-mapped shards) with a fixed held-out validation stream.

    Subclasses set ``name``, ``vocab_size``, ``train_shards`` (1-D integer arrays) and
    ``val_tokens`` (one 1-D array), then call ``_opened()``.
    """

    entropy_floor_nats = None  # unknown for real text
    name: str
    vocab_size: int
    train_shards: list[np.ndarray]
    val_tokens: np.ndarray

    def _opened(self) -> None:
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


class TextCorpus(MemmapCorpus):
    """A finished cache entry of ``data=text`` (see the module docstring)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.meta = json.loads((self.directory / "meta.json").read_text())
        self.name = "text"
        self.vocab_size = int(self.meta["vocab_size"])
        self.eos_id = int(self.meta["eos_id"])
        dtype = np.dtype(self.meta["dtype"])
        self.train_shards = [np.memmap(self.directory / f, dtype=dtype, mode="r") for f in self.meta["train_shards"]]
        self.val_tokens = np.memmap(self.directory / "val.bin", dtype=dtype, mode="r")
        self._opened()


def build_text_corpus(data_cfg: Any, cache_dir: str | None = None, model_vocab_size: int | None = None) -> TextCorpus:
    """Tokenize (once, cached by content hash) and open the corpus described by ``data_cfg``
    (a TextDataConfig, its composed node or a plain dict); ``cache_dir`` wins over data.cache_dir.

    Every check that can refuse the input (config, tokenizer, its vocabulary against
    ``model_vocab_size``) runs before the first pass over the documents."""
    cfg = as_config(TextDataConfig, data_cfg, "data")
    root = Path(cache_dir or cfg.cache_dir or default_cache_dir()).expanduser()
    val_tokens, val_fraction = cfg.val_tokens, cfg.val_fraction
    tokenizer_spec = cfg.tokenizer
    bpe_vocab = cfg.tokenizer_vocab_size
    shard_tokens = cfg.shard_tokens
    eos_token = cfg.eos_token

    tokenizer: TextTokenizer | None = None
    if tokenizer_spec == "train":
        check_bpe_vocab(bpe_vocab)
        vocab = bpe_vocab
    else:
        tokenizer = load_tokenizer(tokenizer_spec, eos_token)
        vocab = tokenizer.vocab_size
    if model_vocab_size is not None:
        check_vocab_fits(vocab, model_vocab_size)

    source = DocumentSource(cfg, cache_root=root)  # file identities from the cache: no pass when unchanged
    if tokenizer is None:
        tokenizer_id = f"bpe{bpe_vocab}-{source.content_hash[:16]}"
    else:
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
        _tokenize_into(work, source, tokenizer, val_tokens, val_fraction, shard_tokens,
                       num_proc=tokenizer_processes(cfg.num_proc, source), eos_token=eos_token)
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


def available_cores() -> int:
    """Cores this process may run on (the affinity mask under SLURM/taskset), else the CPU count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def tokenizer_processes(num_proc: int | None, source: DocumentSource) -> int:
    """``data.num_proc`` when set; else every available core, or 1 for a small corpus (POOL_MIN_*)."""
    if num_proc is not None:
        return int(num_proc)
    small = (source.n_documents < POOL_MIN_DOCUMENTS if source.n_documents is not None
             else source.total_bytes < POOL_MIN_BYTES)
    return 1 if small else available_cores()


def _chunks(source: DocumentSource) -> Iterator[list[str]]:
    chunk: list[str] = []
    for doc in source:
        chunk.append(doc)
        if len(chunk) >= _ENCODE_CHUNK_DOCS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_WORKER_TOKENIZER: TextTokenizer | None = None


def _worker_start(tokenizer_source: str, eos_token: str | None) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already; no threads on top
    _WORKER_TOKENIZER = load_tokenizer(tokenizer_source, eos_token)


def _encode_with(tokenizer: TextTokenizer, chunk: list[str], dtype: str) -> tuple[bytes, np.ndarray, int]:
    """One chunk of documents -> (their ids, each ended by EOS, as bytes; per-document lengths; text bytes)."""
    ids = tokenizer.encode_batch(chunk)
    lengths = np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))
    flat = np.empty(int(lengths.sum()), dtype=dtype)
    pos = 0
    for x in ids:
        flat[pos:pos + len(x)] = x
        flat[pos + len(x)] = tokenizer.eos_id  # EOS ends every document
        pos += len(x) + 1
    return flat.tobytes(), lengths, sum(len(d.encode("utf-8")) for d in chunk)


def _worker_encode(chunk: list[str], dtype: str) -> tuple[bytes, np.ndarray, int]:
    return _encode_with(_WORKER_TOKENIZER, chunk, dtype)


def _encoded_chunks(source: DocumentSource, tokenizer: TextTokenizer, dtype: str, num_proc: int,
                    eos_token: str | None) -> Iterable[tuple[bytes, np.ndarray, int]]:
    """Encoded chunks in document order; ``num_proc`` > 1 encodes in a pool of processes, with at
    most 2 chunks per process in flight so a corpus of any size streams through bounded memory."""
    if num_proc <= 1:
        yield from (_encode_with(tokenizer, chunk, dtype) for chunk in _chunks(source))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the parent may hold torch/OpenMP threads that a forked child must not inherit.
    with ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                             initargs=(tokenizer.source, eos_token)) as pool:
        pending: deque = deque()
        for chunk in _chunks(source):
            pending.append(pool.submit(_worker_encode, chunk, dtype))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _tokenize_into(work: Path, source: DocumentSource, tokenizer: TextTokenizer, val_tokens, val_fraction,
                   shard_tokens: int, num_proc: int = 1, eos_token: str | None = None) -> None:
    """Tokenize every document into one stream (``num_proc`` processes), then split whole
    documents into val and train."""
    from tqdm.auto import tqdm

    dtype = token_dtype(tokenizer.vocab_size)
    lengths_parts: list[np.ndarray] = []
    stream_path = work / "all.bin"
    # The bar's total: documents when the source knows them, else the files' bytes (text bytes
    # are counted as they are encoded; the bar is closed at 100% when the files are done).
    by_docs = source.n_documents is not None
    bar_total = source.n_documents if by_docs else source.total_bytes
    unit = dict(unit="doc") if by_docs else dict(unit="B", unit_scale=True, unit_divisor=1024)
    with open(stream_path, "wb") as out, tqdm(total=bar_total, desc=f"tokenizing ({num_proc} proc)", mininterval=1.0,
                                              **unit) as bar:
        for data, lengths, text_bytes in _encoded_chunks(source, tokenizer, dtype.name, num_proc, eos_token):
            out.write(data)
            lengths_parts.append(lengths)
            bar.update(min(len(lengths) if by_docs else text_bytes, max(bar_total - bar.n, 0)))
        bar.update(max(bar_total - bar.n, 0))
    doc_lengths = np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, dtype=np.int64)
    if not len(doc_lengths):
        raise UserError("data: the corpus has no non-empty documents; check data.files / data.dataset and data.text_field")
    lengths = np.asarray(doc_lengths, dtype=np.int64)
    total = int(lengths.sum())
    target = val_target_tokens(val_tokens) if val_tokens is not None else int(round(float(val_fraction) * total))
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
    warnings = []
    if val_count > VAL_WARN_FRACTION * total:
        warnings.append(f"the held-out split is {val_count} tokens, {val_count / total:.0%} of the corpus ({total} tokens); "
                        f"lower data.val_tokens / eval.tokens or use more data")
        warn(warnings[-1])
    write_json_atomic(work / "meta.json", {
        "format": CACHE_FORMAT, "dtype": dtype.name, "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id,
        "documents": len(lengths), "val_documents": int(is_val.sum()), "train_tokens": total - val_count,
        "val_tokens": val_count, "val_target_tokens": target, "train_shards": shards, "warnings": warnings,
    })
