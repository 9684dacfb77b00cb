"""Pre-tokenized ``.bin`` shards (``data=tokens``), memory-mapped as they are: no tokenizing, no copy.

Formats:
- nanoGPT / modded-nanogpt / llm.c: a header of 256 little-endian int32 (magic, version,
  token count, zeros), then the tokens. Magic 20240520 version 1 holds uint16 tokens
  (GPT-2), magic 20240801 version 7 uint32 (llm.c's Llama 3 shards).
- raw: tokens only, uint16 or uint32 as ``data.dtype`` states.

Validation: ``data.val_files`` when given (the first ``val_target_tokens`` of them), else a
held-out tail of the last training shard, started at a document boundary when
``data.eos_id`` is known. The shards' identity comes from the identity cache (path, size,
mtime; full hash once), so opening them costs no pass over the data.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import numpy as np

from optlaw.config import as_config
from optlaw.config.data import TokensDataConfig
from optlaw.data.corpus import check_vocab_fits
from optlaw.data.identity import default_cache_dir, files_identity
from optlaw.data.text import MemmapCorpus, val_target_tokens, warn, VAL_WARN_FRACTION
from optlaw.errors import UserError

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
# magic -> {version: token dtype}
NANOGPT_MAGIC: dict[int, dict[int, str]] = {20240520: {1: "uint16"}, 20240801: {7: "uint32"}}


def resolve_shards(patterns: list[str], key: str) -> list[Path]:
    """Paths, globs and folders (every ``*.bin`` inside, sorted), in order; each must match."""
    files: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(str(pattern))
        if os.path.isdir(expanded):
            matches = sorted(str(p) for p in Path(expanded).glob("*.bin"))
        elif glob.has_magic(expanded):
            matches = sorted(m for m in glob.glob(expanded, recursive=True) if os.path.isfile(m))
        else:
            matches = [expanded] if os.path.isfile(expanded) else []
        if not matches:
            raise UserError(f"{key}: no .bin file matches {pattern!r}; give shard paths, globs or folders holding *.bin")
        files.extend(Path(m).resolve() for m in matches)
    return files


def read_header(path: Path) -> tuple[str, int] | None:
    """(dtype, token count) of a nanoGPT-style shard, or None when the file has no such header."""
    with open(path, "rb") as fh:
        raw = fh.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        return None
    header = np.frombuffer(raw, dtype="<i4")
    versions = NANOGPT_MAGIC.get(int(header[0]))
    if versions is None:
        return None
    dtype = versions.get(int(header[1]))
    if dtype is None:
        raise UserError(f"{path.name}: nanoGPT magic {int(header[0])} with unknown version {int(header[1])}; "
                        f"known: {NANOGPT_MAGIC}")
    return dtype, int(header[2])


def open_shard(path: Path, fmt: str, dtype: str | None) -> tuple[np.memmap, str, str]:
    """(tokens, format, dtype) of one shard, memory-mapped, after checking its size."""
    header = read_header(path) if fmt in ("auto", "nanogpt") else None
    size = path.stat().st_size
    if header is not None:
        token_dtype, count = header
        itemsize = np.dtype(token_dtype).itemsize
        if size != HEADER_BYTES + count * itemsize:
            raise UserError(f"{path.name}: the header says {count} {token_dtype} tokens ({HEADER_BYTES + count * itemsize} "
                            f"bytes) but the file has {size} bytes; the shard is truncated or not a nanoGPT shard")
        if dtype is not None and dtype != token_dtype:
            raise UserError(f"{path.name}: the header says {token_dtype} tokens but data.dtype={dtype}; drop data.dtype")
        return np.memmap(path, dtype=token_dtype, mode="r", offset=HEADER_BYTES, shape=(count,)), "nanogpt", token_dtype
    if fmt == "nanogpt":
        raise UserError(f"{path.name} has no nanoGPT header (magic 20240520 or 20240801); use data.format=raw with data.dtype")
    if dtype is None:
        raise UserError(f"{path.name} has no nanoGPT header; say how its tokens are stored: data.dtype=uint16 or uint32")
    itemsize = np.dtype(dtype).itemsize
    if size == 0 or size % itemsize:
        raise UserError(f"{path.name}: {size} bytes is not a whole number of {dtype} tokens; check data.dtype")
    return np.memmap(path, dtype=dtype, mode="r"), "raw", dtype


class TokenShardCorpus(MemmapCorpus):
    """``data=tokens``: training windows drawn from the shards, as for ``data=text``."""

    def __init__(self, data_cfg: Any, cache_dir: str | None = None, model_vocab_size: int | None = None):
        cfg = as_config(TokensDataConfig, data_cfg, "data")
        if model_vocab_size is not None:
            check_vocab_fits(cfg.vocab_size, model_vocab_size)
        self.name = "tokens"
        self.vocab_size = int(cfg.vocab_size)
        self.eos_id = cfg.eos_id
        train_files = resolve_shards(list(cfg.files), "data.files")
        val_files = resolve_shards(list(cfg.val_files), "data.val_files") if cfg.val_files else []
        opened = [open_shard(p, cfg.format, cfg.dtype) for p in train_files + val_files]
        formats = [f"{fmt}:{dt}" for _, fmt, dt in opened]
        root = Path(cache_dir or cfg.cache_dir or default_cache_dir()).expanduser()
        self.content_hash = files_identity(train_files + val_files, formats, root)
        arrays = [a for a, _, _ in opened]
        self.train_shards = arrays[:len(train_files)]
        target = val_target_tokens(cfg.val_tokens)
        if val_files:
            self.val_tokens = self._first_tokens(arrays[len(train_files):], target)
        else:
            self.train_shards[-1], self.val_tokens = self._held_out_tail(self.train_shards[-1], target, cfg.eos_id)
        self._opened()
        total = self.train_tokens + (0 if val_files else len(self.val_tokens))
        if not val_files and len(self.val_tokens) > VAL_WARN_FRACTION * total:
            warn(f"the held-out tail is {len(self.val_tokens)} tokens, {len(self.val_tokens) / total:.0%} of the shards "
                 f"({total} tokens); give data.val_files or lower data.val_tokens / eval.tokens")
        self.directory = train_files[0].parent
        self.meta = {"files": [str(p) for p in train_files], "val_files": [str(p) for p in val_files],
                     "formats": sorted(set(formats)), "train_tokens": self.train_tokens,
                     "val_tokens": int(len(self.val_tokens)), "content_hash": self.content_hash}

    @staticmethod
    def _first_tokens(arrays: list[np.ndarray], target: int) -> np.ndarray:
        """The first ``target`` tokens of the validation shards, in memory (eval sets are small)."""
        parts, have = [], 0
        for a in arrays:
            take = min(len(a), target - have)
            parts.append(np.asarray(a[:take]))
            have += take
            if have >= target:
                break
        return np.concatenate(parts)

    @staticmethod
    def _held_out_tail(shard: np.ndarray, target: int, eos_id: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Split the last shard into (train head, held-out tail of at least ``target`` tokens)."""
        cut = len(shard) - target
        if cut <= 0:
            raise UserError(f"the last shard has {len(shard)} tokens, fewer than the {target} held out for validation; "
                            f"give data.val_files or lower eval.tokens / data.val_tokens")
        if eos_id is not None:
            # Start the tail just after the last EOS before the cut, so it holds whole documents.
            window = np.asarray(shard[max(0, cut - 1_000_000):cut])
            hits = np.flatnonzero(window == eos_id)
            if len(hits):
                cut = cut - len(window) + int(hits[-1]) + 1
        return shard[:cut], shard[cut:]
