"""Tokenizers for real text: a local tokenizer.json / transformers directory, or one we train."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from optlaw.errors import ConfigError, UserError

# End-of-document markers we recognise, most common first.
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>", "[SEP]")
TRAINED_EOS = "<|endoftext|>"


class TextTokenizer:
    """encode_batch(texts) -> list of id lists; vocab_size; eos_id; a content hash."""

    def __init__(self, backend, vocab_size: int, eos_id: int, content_hash: str, source: str):
        self.backend = backend
        self.vocab_size = vocab_size
        self.eos_id = eos_id
        self.content_hash = content_hash
        self.source = source

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if hasattr(self.backend, "encode_batch"):  # tokenizers.Tokenizer (Rust, parallel)
            return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]
        return self.backend(texts, add_special_tokens=False)["input_ids"]


def _hash_path(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _eos_from_vocab(vocab: dict[str, int], eos_token: str | None, where: str) -> int:
    if eos_token:
        if eos_token not in vocab:
            raise ConfigError(f"data.eos_token={eos_token!r} is not in the tokenizer at {where}; pick a token it has")
        return vocab[eos_token]
    for token in EOS_CANDIDATES:
        if token in vocab:
            return vocab[token]
    raise ConfigError(f"the tokenizer at {where} has no end-of-document token; set data.eos_token to one of its special tokens")


def load_tokenizer(path_text: str, eos_token: str | None = None) -> TextTokenizer:
    """A tokenizer.json file, or a directory holding one or a transformers tokenizer."""
    path = Path(os.path.expanduser(path_text))
    if not path.exists():
        raise UserError(f"data.tokenizer={path_text!r} does not exist; give a tokenizer.json, a transformers tokenizer directory, or 'train'")
    from tokenizers import Tokenizer

    json_file = path / "tokenizer.json" if path.is_dir() else path
    if json_file.is_file():
        backend = Tokenizer.from_file(str(json_file))
        vocab = backend.get_vocab(with_added_tokens=True)
        eos = _eos_from_vocab(vocab, eos_token, str(path))
        return TextTokenizer(backend, max(vocab.values()) + 1, eos, _hash_path(json_file), str(path))
    from transformers import AutoTokenizer

    try:
        backend = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise UserError(f"data.tokenizer={path_text!r} is not a tokenizer directory ({type(exc).__name__}); give a tokenizer.json or a saved transformers tokenizer") from None
    vocab = backend.get_vocab()
    if eos_token is None and backend.eos_token_id is not None:
        eos = int(backend.eos_token_id)
    else:
        eos = _eos_from_vocab(vocab, eos_token, str(path))
    return TextTokenizer(backend, max(len(backend), max(vocab.values()) + 1), eos, _hash_path(path), str(path))


def check_bpe_vocab(vocab_size: int) -> None:
    if vocab_size < 257 + 1:
        raise ConfigError(f"data.tokenizer_vocab_size={vocab_size} is too small; byte-level BPE needs at least 258 (256 bytes + EOS + 1 merge)")


def train_bpe(texts: Iterable[str], vocab_size: int, save_to: Path, length: int | None = None) -> TextTokenizer:
    """Train a byte-level BPE (GPT-2 style: no unknown tokens) and save its tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_bpe_vocab(vocab_size)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[TRAINED_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    save_to.parent.mkdir(parents=True, exist_ok=True)
    tmp = save_to.with_suffix(".tmp")
    tokenizer.save(str(tmp))
    os.replace(tmp, save_to)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    return TextTokenizer(tokenizer, max(vocab.values()) + 1, vocab[TRAINED_EOS], _hash_path(save_to), str(save_to))
