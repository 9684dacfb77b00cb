"""Data stage: corpora whose batches are pure functions of (seed, step, micro, rank).

``build_corpus(data_cfg)`` returns a ``Corpus`` (see ``optlaw.data.corpus``):
``data.name=synthetic`` is the embedded topic/n-gram corpus with an exact entropy floor,
``data.name=facts`` a Zipf-weighted fact table in bigram filler (exact floor too; the demo's corpus),
``data.name=text`` tokenizes local files or a ``datasets`` dataset into memory-mapped shards,
``data.name=tokens`` memory-maps pre-tokenized .bin shards as they are.
"""

from __future__ import annotations

import json
from typing import Any

from optlaw.config.data import DATA_SCHEMAS, FactsDataConfig, TextDataConfig, TokensDataConfig, data_config
from optlaw.data.corpus import Corpus, check_vocab_fits
from optlaw.jsonio import plain

DATA_NAMES = tuple(DATA_SCHEMAS)


def build_corpus(data_cfg: Any, cache_dir: str | None = None, model_vocab_size: int | None = None) -> Corpus:
    """The corpus of a ``data`` section (composed node, plain dict or DataConfig).

    ``cache_dir``, when given, wins over ``data.cache_dir`` (text and token corpora).
    ``model_vocab_size``, when given, is checked against the corpus vocabulary before any
    pass over the data (a tokenizer that does not fit is refused before tokenizing).
    """
    cfg = data_config(data_cfg)
    if isinstance(cfg, TextDataConfig):
        from optlaw.data.text import build_text_corpus

        return build_text_corpus(cfg, cache_dir, model_vocab_size)
    if isinstance(cfg, TokensDataConfig):
        from optlaw.data.shards import TokenShardCorpus

        return TokenShardCorpus(cfg, cache_dir, model_vocab_size)
    # A generated corpus (facts, synthetic) is a pure function of its config (its caches are
    # memoisation), so a process that trains many points (the sweep's worker) builds its tables once.
    key = json.dumps([type(cfg).__name__, plain(cfg)], sort_keys=True)
    if key not in _GENERATED:
        _GENERATED.clear()  # one corpus at a time: a sweep rarely has two, and tables can be large
        if isinstance(cfg, FactsDataConfig):
            from optlaw.data.facts import FactsCorpus

            _GENERATED[key] = FactsCorpus(cfg)
        else:
            from optlaw.data.synthetic import SyntheticCorpus

            _GENERATED[key] = SyntheticCorpus(cfg)
    corpus = _GENERATED[key]
    if model_vocab_size is not None:
        check_vocab_fits(corpus.vocab_size, model_vocab_size)
    return corpus


_GENERATED: dict[str, Corpus] = {}

__all__ = ["build_corpus", "check_vocab_fits", "Corpus", "DATA_NAMES"]
