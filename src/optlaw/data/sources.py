"""Where real text comes from: local files (txt / jsonl / parquet) or a `datasets` dataset."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optlaw.config import as_config
from optlaw.config.data import TextDataConfig
from optlaw.data.identity import files_identity
from optlaw.errors import UserError

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)


def resolve_files(patterns: list[str] | str | None) -> list[Path]:
    """Expand paths and globs in order; every pattern must match at least one file."""
    if not patterns:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    files: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(str(pattern))
        matches = sorted(glob.glob(expanded, recursive=True)) if glob.has_magic(expanded) else [expanded]
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise UserError(f"data.files: no file matches {pattern!r}; check the path (relative paths are from the current directory)")
        files.extend(Path(m).resolve() for m in matches)
    return files


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return "txt"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise UserError(f"data.files: cannot read {path.name!r}; use .txt, .jsonl or .parquet files (or data.dataset)")


def iter_file_documents(path: Path, text_field: str) -> Iterator[str]:
    """Documents of one file: blank-line-separated paragraphs of a .txt, one JSON object per
    line of a .jsonl, one row of a .parquet (the ``text_field`` column)."""
    fmt = file_format(path)
    if fmt == "txt":
        paragraph: list[str] = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    paragraph.append(line)
                elif paragraph:
                    yield "".join(paragraph).rstrip("\n")
                    paragraph = []
        if paragraph:
            yield "".join(paragraph).rstrip("\n")
    elif fmt == "jsonl":
        # Bytes, decoded line by line: a bad line is named by its number (a text-mode reader
        # decodes ahead in blocks and would blame an earlier line).
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                obj = _jsonl_object(path, line_no, raw, text_field)
                if obj is None:
                    continue
                if text_field not in obj:
                    raise UserError(f"data.text_field={text_field!r} is not a key of {path.name} line {line_no}; set data.text_field to one of {sorted(obj)}")
                yield str(obj[text_field])
    else:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        if text_field not in parquet.schema_arrow.names:
            raise UserError(f"data.text_field={text_field!r} is not a column of {path.name}; set it to one of {parquet.schema_arrow.names}")
        for batch in parquet.iter_batches(columns=[text_field], batch_size=1024):
            for text in batch.column(0).to_pylist():
                if text is not None:
                    yield str(text)


def _jsonl_object(path: Path, line_no: int, raw: bytes, text_field: str) -> dict | None:
    """One line of a .jsonl as its object (None for a blank line), or a one-line error naming the line."""
    where = f"data.files: {path} line {line_no}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{where} is not UTF-8 text (byte {exc.start} of the line); re-encode the file as UTF-8") from None
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} is not JSON ({exc.msg} at column {exc.colno}); "
                        "a .jsonl holds one JSON object per line: fix or remove the line") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where} is a JSON {type(obj).__name__}, not an object; a .jsonl holds one object per line "
                        f"with the text under {text_field!r} (data.text_field)")
    return obj


def hash_files(files: list[Path], cache_root: Path | None = None) -> str:
    """Content hash of the files in order; per-file digests come from the identity cache under
    ``cache_root`` when given (optlaw.data.identity), so an unchanged corpus is not re-read."""
    return files_identity(files, [file_format(p) for p in files], cache_root)


class DocumentSource:
    """The documents of a corpus config, and a hash that changes when they do."""

    def __init__(self, data_cfg: Any, cache_root: Path | None = None):
        cfg = as_config(TextDataConfig, data_cfg, "data")  # data.files or data.dataset is checked there
        self.text_field = cfg.text_field
        self.dataset = cfg.dataset
        self.dataset_config = cfg.dataset_config
        self.split = cfg.split
        self.max_documents = cfg.max_documents
        self.files = resolve_files(cfg.files)
        self._dataset = None
        if self.dataset:
            self._dataset = self._load_dataset()
            if self.text_field not in self._dataset.column_names:
                raise UserError(f"data.text_field={self.text_field!r} is not a column of {self.dataset}; set it to one of {self._dataset.column_names}")
            self.content_hash = hashlib.sha256(
                json.dumps([self.dataset, self.dataset_config, self.split, hash_files(self.files, cache_root), self._dataset._fingerprint]).encode()
            ).hexdigest()
        else:
            self.content_hash = hash_files(self.files, cache_root)
        self.content_hash = hashlib.sha256(f"{self.content_hash}|{self.text_field}|{self.max_documents}".encode()).hexdigest()

    def _load_dataset(self):
        import datasets

        data_files = [str(f) for f in self.files] or None
        try:
            return datasets.load_dataset(self.dataset, self.dataset_config, split=self.split, data_files=data_files)
        except Exception as exc:  # datasets raises many types; all mean the same to a user
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"data.dataset={self.dataset!r} could not be loaded ({first}); check the name, data.split and your network/HF cache") from None

    @property
    def total_bytes(self) -> int:
        """Bytes of the local files (a progress bar's total when documents are not counted up front)."""
        return sum(p.stat().st_size for p in self.files)

    @property
    def n_documents(self) -> int | None:
        """Known up front for a `datasets` dataset (for progress bars); None for files."""
        return len(self._dataset) if self._dataset is not None else None

    def __iter__(self) -> Iterator[str]:
        count = 0
        if self._dataset is not None:
            # Batched iteration: indexing the column would load all of it into memory at once.
            batches = self._dataset.select_columns([self.text_field]).iter(batch_size=1024)
            stream = (str(t) for batch in batches for t in batch[self.text_field] if t is not None)
        else:
            stream = (doc for path in self.files for doc in iter_file_documents(path, self.text_field))
        for doc in stream:
            if self.max_documents is not None and count >= int(self.max_documents):
                return
            if doc:
                count += 1
                yield doc
