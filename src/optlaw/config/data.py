"""The ``data`` group: the embedded synthetic and facts corpora or real text (optlaw.data; docs/data.md)."""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import II, MISSING

from optlaw.config.core import as_config
from optlaw.errors import ConfigError

SYNTHETIC_COMPONENTS = ("topic", "shared_bigram", "genre_bigram", "genre_trigram")


@dataclass
class DataConfig:
    """What every corpus config has."""

    name: str = MISSING
    """synthetic, facts or text (chosen as data=<name>)."""


@dataclass
class SyntheticDataConfig(DataConfig):
    """Documents with a latent topic; tokens from a topic/bigram/trigram mixture over a Zipfian vocabulary (math in docs/data.md). The numbers are chosen, not taken from a paper, so that CPU-scale models keep improving with parameters and tokens; reference losses in docs/data.md."""

    name: str = "synthetic"
    seed: int = 1234
    """Structure seed: the tables (topics, n-gram rows). Data order comes from the run's seed."""
    vocab_size: int = 1024
    """Tokens, 0 being BOS (3..65536); the CPU model presets use the same vocabulary."""
    zipf_exponent: float = 1.0
    """Zipf's law for word frequencies (exponent ~1, Zipf 1949)."""
    n_genres: int = 4
    """Genres; each has its own bigram/trigram rows."""
    topics_per_genre: int = 8
    """Latent topics per genre (4 x 8 = 32 topics)."""
    mixture: Dict[str, float] = field(default_factory=lambda: {
        "topic": 0.20, "shared_bigram": 0.35, "genre_bigram": 0.20, "genre_trigram": 0.25})
    """Next-token mixture weights (>= 0, sum to 1): topic (the topic's unigram, inferred from the whole prefix), shared_bigram (rows shared by all documents), genre_bigram (rows of the genre), genre_trigram (hashed-trigram rows of the genre: the long tail). A component left out weighs 0."""
    shared_candidates: int = 16
    """Successors per previous token (shared rows)."""
    bigram_candidates: int = 8
    """Successors per (genre, previous token)."""
    trigram_candidates: int = 8
    """Successors per (genre, hashed pair of previous tokens)."""
    trigram_buckets: int = 16384
    """Rows of the trigram table per genre."""
    candidate_exponent: float = 1.2
    """Zipf exponent of the weights over a row's successors."""
    seq_len: int = II("model.seq_len")
    """Sequence length at which the entropy floor is computed (the model's context)."""
    val_tokens: int = II("eval.tokens")
    """Validation tokens over which the entropy floor is computed (the trainer's eval tokens)."""

    def check(self) -> None:
        if not 3 <= self.vocab_size <= 65536:
            raise ConfigError(f"data.vocab_size={self.vocab_size} must be in 3..65536")
        unknown = sorted(set(self.mixture) - set(SYNTHETIC_COMPONENTS))
        if unknown:
            raise ConfigError(f"data.mixture has unknown components {unknown}; use {', '.join(SYNTHETIC_COMPONENTS)}")
        weights = [self.mixture.get(name, 0.0) for name in SYNTHETIC_COMPONENTS]
        if any(w < 0 for w in weights) or not math.isclose(sum(weights), 1.0, rel_tol=1e-6):
            raise ConfigError(f"data.mixture weights {[float(w) for w in weights]} must be >= 0 and sum to 1")
        for key in ("n_genres", "topics_per_genre", "shared_candidates", "bigram_candidates", "trigram_candidates", "trigram_buckets"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be >= 1")


# Dense prefix-weight tables of the facts corpus up to 16M entries (128 MiB), else an error.
FACTS_MAX_PREFIX_TABLE = 1 << 24


@dataclass
class FactsDataConfig(DataConfig):
    """A Zipf-weighted table of key -> value facts inside bigram filler text, so the loss keeps falling with parameters (more facts stored) and tokens (more facts seen often enough); exact entropy floor (math and the measured regime in docs/data.md). The demo's corpus."""

    name: str = "facts"
    seed: int = 1234
    """Structure seed: the fact table and filler rows. Data order comes from the run's seed."""
    vocab_size: int = 128
    """Tokens (4..65536): 0 BOS, 1 MARK (starts a record), 2.. content tokens."""
    n_facts: int = 12000
    """M facts; distinct keys need (vocab_size - 2)^key_len >= n_facts."""
    fact_zipf: float = 1.3
    """p(fact f) ~ (f+1)^-a (> 0): the tail beyond the k stored facts shrinks like k^(1-a)."""
    key_len: int = 2
    """Key tokens per record."""
    value_len: int = 2
    """Value tokens per record, fixed per fact."""
    fact_rate: float = 0.5
    """Probability (0..1, exclusive) that a free position starts a record."""
    value_noise: float = 0.0
    """Probability (0..1) that a value token is replaced by a uniform content token."""
    filler_candidates: int = 8
    """Successors per previous token in the filler bigram rows."""
    candidate_exponent: float = 1.2
    """Zipf exponent of the weights over a filler row's successors."""
    zipf_exponent: float = 1.0
    """Global Zipf law the filler successors are drawn from."""
    seq_len: int = II("model.seq_len")
    """Sequence length at which the entropy floor is computed (the model's context)."""
    val_tokens: int = II("eval.tokens")
    """Validation tokens over which the entropy floor is computed (the trainer's eval tokens)."""

    def check(self) -> None:
        if not 4 <= self.vocab_size <= 65536:
            raise ConfigError(f"data.vocab_size={self.vocab_size} must be in 4..65536 (BOS, MARK and >= 2 content tokens)")
        for key in ("n_facts", "key_len", "value_len", "filler_candidates"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be >= 1")
        content = self.vocab_size - 2
        if self.n_facts > content ** self.key_len:
            raise ConfigError(f"data.n_facts={self.n_facts} exceeds the {content ** self.key_len} distinct keys of "
                              f"data.key_len={self.key_len} over {content} content tokens; raise key_len or vocab_size")
        if content ** (self.key_len - 1) > FACTS_MAX_PREFIX_TABLE:
            raise ConfigError(f"data.key_len={self.key_len} with {content} content tokens needs a prefix table of "
                              f"{content ** (self.key_len - 1)} entries; lower key_len or vocab_size")
        if not 0.0 < self.fact_rate < 1.0:
            raise ConfigError(f"data.fact_rate={self.fact_rate} must be in (0, 1): records and filler both occur")
        if not 0.0 <= self.value_noise <= 1.0:
            raise ConfigError(f"data.value_noise={self.value_noise} must be in [0, 1]")
        if self.fact_zipf <= 0:
            raise ConfigError(f"data.fact_zipf={self.fact_zipf} must be > 0")


@dataclass
class TextDataConfig(DataConfig):
    """Real text, tokenized once per (corpus content, tokenizer) into memory-mapped uint16/uint32 shards under cache_dir; every run shares the same held-out validation split (docs/data.md)."""

    name: str = "text"
    files: List[str] = field(default_factory=list)
    """Local .txt (blank-line-separated documents), .jsonl or .parquet paths or globs."""
    dataset: Optional[str] = None
    """Or a `datasets` name (hub), or a builder (json, parquet, text) reading `files`."""
    dataset_config: Optional[str] = None
    """The dataset's config name, if it has several."""
    split: str = "train"
    """The dataset split to read."""
    text_field: str = "text"
    """JSON key / parquet column / dataset column holding the text."""
    max_documents: Optional[int] = None
    """Use only the first N documents (smoke runs); null = all."""
    tokenizer: str = "train"
    """A tokenizer.json, a transformers tokenizer directory, or `train` (byte-level BPE trained on this corpus)."""
    tokenizer_vocab_size: int = 8192
    """Vocabulary of the trained BPE (tokenizer=train); must not exceed model.vocab_size."""
    eos_token: Optional[str] = None
    """End-of-document token; null = the tokenizer's EOS (<|endoftext|>, </s>, ...)."""
    val_tokens: Optional[int] = II("eval.tokens")
    """Held-out tokens: this many plus a margin (1/20 + 1025, for the last partial sequence), taken whole documents at a time; a warning when that exceeds 10% of the corpus. Default: the trainer's eval.tokens. Or null and set val_fraction."""
    val_fraction: Optional[float] = None
    """Held-out fraction of the tokens, instead of val_tokens."""
    shard_tokens: int = 268435456
    """Tokens per train shard file (2^28: 512 MiB as uint16)."""
    num_proc: Optional[int] = None
    """Tokenizer processes; null = every core this process may use (os.sched_getaffinity), or 1 for a corpus under 16 MiB / 20k documents."""
    cache_dir: Optional[str] = None
    """Token cache; null = $OPTLAW_CACHE_DIR/data or ~/.cache/optlaw/data."""

    def check(self) -> None:
        if (self.val_tokens is None) == (self.val_fraction is None):
            raise ConfigError("set exactly one of data.val_tokens and data.val_fraction (the held-out split size)")
        if self.val_fraction is not None and not 0 < self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be between 0 and 1")
        if not self.files and not self.dataset:
            raise ConfigError("data=text needs data.files (local .txt/.jsonl/.parquet paths or globs) or data.dataset (a `datasets` name)")
        if self.val_tokens is not None and self.val_tokens < 1:
            raise ConfigError(f"data.val_tokens={self.val_tokens} must be >= 1 (or null with data.val_fraction)")
        if self.num_proc is not None and self.num_proc < 1:
            raise ConfigError(f"data.num_proc={self.num_proc} must be >= 1, or null for every available core")
        if self.shard_tokens < 1:
            raise ConfigError(f"data.shard_tokens={self.shard_tokens} must be >= 1")


TOKEN_FORMATS = ("auto", "nanogpt", "raw")


@dataclass
class TokensDataConfig(DataConfig):
    """Pre-tokenized shards used as they are, memory-mapped, never re-tokenized: nanoGPT / modded-nanogpt / llm.c `.bin` files (256 int32 header, then uint16 or uint32 tokens) or plain uint16/uint32 `.bin` files of a stated dtype (docs/data.md)."""

    name: str = "tokens"
    files: List[str] = field(default_factory=list)
    """Training shards: `.bin` paths, globs, or folders (every *.bin inside, sorted)."""
    val_files: List[str] = field(default_factory=list)
    """Validation shards (e.g. fineweb_val_*.bin); empty = the last val_tokens (+ margin) of the training shards are held out."""
    format: str = "auto"
    """auto (a nanoGPT header when the file starts with its magic number, else raw), nanogpt, or raw."""
    dtype: Optional[str] = None
    """uint16 or uint32: required for raw files; nanoGPT headers state their own."""
    vocab_size: int = MISSING
    """Vocabulary of the tokenizer that made the shards (50257 for GPT-2); checked against model.vocab_size before training."""
    eos_id: Optional[int] = None
    """End-of-document token (50256 for GPT-2); when set, a held-out tail starts at a document boundary."""
    val_tokens: int = II("eval.tokens")
    """Held-out tokens when val_files is empty (plus the same margin as data=text)."""
    cache_dir: Optional[str] = None
    """Where the shards' identity (size, mtime, SHA-256) is kept; null = $OPTLAW_CACHE_DIR/data or ~/.cache/optlaw/data."""

    def check(self) -> None:
        if not self.files:
            raise ConfigError("data=tokens needs data.files: .bin shards, globs or folders of them")
        if self.format not in TOKEN_FORMATS:
            raise ConfigError(f"data.format={self.format!r} is not one of {', '.join(TOKEN_FORMATS)}")
        if self.dtype is not None and self.dtype not in ("uint16", "uint32"):
            raise ConfigError(f"data.dtype={self.dtype!r} must be uint16 or uint32")
        if self.format == "raw" and self.dtype is None:
            raise ConfigError("data.format=raw needs data.dtype=uint16 or data.dtype=uint32 (raw .bin files do not say)")
        if self.vocab_size < 2:
            raise ConfigError(f"data.vocab_size={self.vocab_size} must be the tokenizer's vocabulary (e.g. 50257 for GPT-2)")
        if self.dtype == "uint16" and self.vocab_size > 1 << 16:
            raise ConfigError(f"data.vocab_size={self.vocab_size} does not fit data.dtype=uint16; use uint32")


DATA_SCHEMAS: dict[str, type[DataConfig]] = {
    "synthetic": SyntheticDataConfig, "facts": FactsDataConfig, "text": TextDataConfig, "tokens": TokensDataConfig}


def data_config(value: Any) -> DataConfig:
    """A data section (composed node, plain dict or instance) as its checked schema, chosen by data.name."""
    if isinstance(value, DataConfig):
        return value
    name = value.get("name") if isinstance(value, Mapping) else getattr(value, "name", None)
    schema = DATA_SCHEMAS.get(str(name))
    if schema is None:
        raise ConfigError(
            f"unknown data.name={name!r}; choose one of: {', '.join(DATA_SCHEMAS)} (data=synthetic, data=facts, data=text or data=tokens)"
        )
    return as_config(schema, value, "data")
