"""``optlaw data <overrides>``: tokenize a corpus into the cache once, before any training.

Takes the same overrides as ``optlaw train`` (data=text data.files=[...] ...), so the
cache entry it builds is exactly the one training runs will reuse.
"""

from __future__ import annotations

import json

from optlaw.config import compose
from optlaw.data import build_corpus


def main(argv: list[str]) -> int:
    if argv and argv[0] in {"-h", "--help"}:
        print("usage: optlaw data [key=value ...]   e.g. optlaw data data=text 'data.files=[corpus/*.jsonl]'")
        print("Builds (or finds) the tokenized cache entry and prints its summary as JSON.")
        return 0
    cfg = compose("train", argv)
    # The model's vocabulary is checked against the tokenizer's before any tokenizing.
    corpus = build_corpus(cfg.data, cfg.data.get("cache_dir"), model_vocab_size=int(cfg.model.vocab_size))
    summary = {"name": corpus.name, "vocab_size": corpus.vocab_size, "entropy_floor_nats": corpus.entropy_floor_nats}
    if hasattr(corpus, "meta"):
        summary.update(corpus.meta)
    if hasattr(corpus, "directory"):
        summary["directory"] = str(corpus.directory)
    print(json.dumps(summary, indent=2))
    return 0
