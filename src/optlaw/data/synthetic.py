"""The embedded synthetic corpus: topic documents over a Zipfian vocabulary.

A document (one training sequence, BOS first) has a latent topic z. Each next token is
drawn from a mixture of four components (weights ``mixture``):
  topic          U_z(x)                    a Zipfian unigram over a topic-specific ranking of the vocabulary
  shared_bigram  S(x | x_{t-1})            sparse rows shared by all documents
  genre_bigram   B_g(x | x_{t-1})          sparse rows of the topic's genre g = genre(z)
  genre_trigram  T_g(x | x_{t-2}, x_{t-1}) sparse rows for hashed pairs (``trigram_buckets`` rows per genre)
Each sparse row holds a few Zipf-weighted successors. The components are learnable at
different scales: the shared bigram by counting, the genre rows only after inferring the
genre from the prefix, the topic unigram by pooling evidence over the whole document, and
the trigram table is too large for small models to memorise. Zipfian row frequencies give
a long tail of rarely seen rows, so loss keeps improving with more parameters and tokens.

Because the generator is known, the Bayes-optimal next-token loss is exact: forward
filtering over the K topics (the only latent) gives p(x_t | x_<t). The entropy floor is
that loss averaged over the validation split. See docs/data.md for the math.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optlaw.config import as_config
from optlaw.config.data import SYNTHETIC_COMPONENTS, SyntheticDataConfig
from optlaw.data.keys import uniforms
from optlaw.data.sampled import SampledCorpus

BOS = 0
_TRIGRAM_HASH = 2654435761  # Knuth's multiplicative hash constant, spreads (x2, x1) pairs over buckets
# Independent random streams per sequence.
_S_TOPIC, _S_COMPONENT, _S_UNIGRAM, _S_SHARED, _S_BIGRAM, _S_TRIGRAM = range(6)
COMPONENTS = SYNTHETIC_COMPONENTS


def _zipf(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return w / w.sum()


class SyntheticCorpus(SampledCorpus):
    """Seeded, deterministic topic/n-gram corpus with an exact entropy floor."""

    def __init__(self, data_cfg: Any):
        cfg = as_config(SyntheticDataConfig, data_cfg, "data")  # checks the numbers (SyntheticDataConfig.check)
        self.name = "synthetic"
        self.vocab_size = cfg.vocab_size
        self.structure_seed = cfg.seed
        self.n_genres = cfg.n_genres
        self.topics_per_genre = cfg.topics_per_genre
        self.mixture = np.array([float(cfg.mixture.get(name, 0.0)) for name in COMPONENTS])  # left out = weight 0
        self.zipf_exponent = cfg.zipf_exponent
        self.candidate_exponent = cfg.candidate_exponent
        self.shared_candidates = cfg.shared_candidates
        self.bigram_candidates = cfg.bigram_candidates
        self.trigram_candidates = cfg.trigram_candidates
        self.trigram_buckets = cfg.trigram_buckets
        self.floor_seq_len = cfg.seq_len
        self.floor_tokens = cfg.val_tokens
        self.n_topics = self.n_genres * self.topics_per_genre
        self._build_tables()
        self._init_cache()

    # ---- the generator's tables (depend only on the structure seed) ----
    def _build_tables(self) -> None:
        rng = np.random.default_rng(self.structure_seed)
        V, K, G = self.vocab_size, self.n_topics, self.n_genres
        content = V - 1  # every token but BOS
        base = _zipf(content, self.zipf_exponent)
        # Topic unigrams: the same Zipf law over a topic-specific ranking of the content tokens.
        self.topic_token_of_rank = np.stack([1 + rng.permutation(content) for _ in range(K)])
        self.unigram = np.zeros((K, V))
        np.put_along_axis(self.unigram, self.topic_token_of_rank, base[None, :], axis=1)
        self.base_cdf = np.cumsum(base)
        # n-gram rows: successors drawn from the global Zipf law (token id = frequency rank).
        self.shared_cand = 1 + rng.choice(content, size=(V, self.shared_candidates), p=base)
        self.bigram_cand = 1 + rng.choice(content, size=(G, V, self.bigram_candidates), p=base)
        self.trigram_cand = 1 + rng.choice(content, size=(G, self.trigram_buckets, self.trigram_candidates), p=base)
        self.shared_w = _zipf(self.shared_candidates, self.candidate_exponent)
        self.bigram_w = _zipf(self.bigram_candidates, self.candidate_exponent)
        self.trigram_w = _zipf(self.trigram_candidates, self.candidate_exponent)
        self.genre_of_topic = np.arange(K) // self.topics_per_genre
        # Trigram row offset for every (x_{t-2}, x_{t-1}) pair: one lookup per step when sampling.
        pairs = np.arange(V * V, dtype=np.int64)
        self._pair_offset = self._bucket(pairs // V, pairs % V) * self.trigram_candidates

    def _bucket(self, x2: np.ndarray, x1: np.ndarray) -> np.ndarray:
        return ((x2.astype(np.int64) * self.vocab_size + x1) * _TRIGRAM_HASH) % self.trigram_buckets

    # ---- sampling ----
    def sample(self, keys: np.ndarray, length: int, return_topics: bool = False):
        """Documents [len(keys), length] (BOS first), one per key; pure in the keys."""
        B, T = len(keys), length
        z = np.minimum((uniforms(keys, 1, _S_TOPIC)[:, 0] * self.n_topics).astype(np.int64), self.n_topics - 1)
        g = self.genre_of_topic[z]
        cum_mix = np.cumsum(self.mixture)
        component = np.searchsorted(cum_mix[:-1], uniforms(keys, T, _S_COMPONENT), side="right")
        # Unigram draws: a Zipf rank by inverse CDF, then the topic's token of that rank.
        rank = np.minimum(np.searchsorted(self.base_cdf, uniforms(keys, T, _S_UNIGRAM), side="right"), self.vocab_size - 2)
        uni_tok = self.topic_token_of_rank[z[:, None], rank]
        sj = np.minimum(np.searchsorted(np.cumsum(self.shared_w), uniforms(keys, T, _S_SHARED), side="right"), self.shared_candidates - 1)
        bj = np.minimum(np.searchsorted(np.cumsum(self.bigram_w), uniforms(keys, T, _S_BIGRAM), side="right"), self.bigram_candidates - 1)
        tj = np.minimum(np.searchsorted(np.cumsum(self.trigram_w), uniforms(keys, T, _S_TRIGRAM), side="right"), self.trigram_candidates - 1)
        # Flat indices into the candidate tables, time-major so each step reads a contiguous row;
        # only the previous tokens remain to be added inside the loop.
        shared_flat = self.shared_cand.ravel()
        bigram_flat = self.bigram_cand.ravel()
        sj = np.ascontiguousarray(sj.T)
        trigram_flat = self.trigram_cand.ravel()
        b_base = np.ascontiguousarray(((g[:, None] * self.vocab_size) * self.bigram_candidates + bj).T)
        t_base = np.ascontiguousarray(((g[:, None] * self.trigram_buckets) * self.trigram_candidates + tj).T)
        component = np.ascontiguousarray(component.T)
        uni_tok = np.ascontiguousarray(uni_tok.T)
        pair_offset = self._pair_offset
        V, cs, cb = self.vocab_size, self.shared_candidates, self.bigram_candidates
        x = np.empty((T, B), dtype=np.int64)
        x[0] = BOS
        pair = np.full(B, BOS * V + BOS, dtype=np.int64)  # (x_{t-2}, x_{t-1}) as one index
        for t in range(1, T):  # sequential in t by nature; vectorised over the batch
            prev1 = x[t - 1]
            tok = np.choose(component[t], (
                uni_tok[t],
                shared_flat[sj[t] + prev1 * cs],
                bigram_flat[b_base[t] + prev1 * cb],
                trigram_flat[t_base[t] + pair_offset[pair]],
            ))
            x[t] = tok
            pair = prev1 * V + tok
        x = np.ascontiguousarray(x.T)
        return (x, z) if return_topics else x

    # ---- exact Bayes-optimal loss ----
    def token_log_probs(self, docs: np.ndarray) -> np.ndarray:
        """log P(x_t | z, x_{t-1}, x_{t-2}) for every topic: [B, T-1, K] (targets t = 1..T-1)."""
        docs = np.asarray(docs, dtype=np.int64)
        x = docs[:, 1:]
        prev1 = docs[:, :-1]
        prev2 = np.concatenate([np.full((len(docs), 1), BOS), docs[:, :-2]], axis=1)
        bucket = self._bucket(prev2, prev1)
        # n-gram probabilities: sum the weights of the row's candidates equal to x.
        p_shared = ((self.shared_cand[prev1] == x[..., None]) * self.shared_w).sum(-1)  # [B, T-1]
        b_rows = self.bigram_cand[:, prev1]  # [G, B, T-1, cb]
        p_bi = ((b_rows == x[None, ..., None]) * self.bigram_w).sum(-1)
        t_rows = self.trigram_cand[:, bucket]
        p_tri = ((t_rows == x[None, ..., None]) * self.trigram_w).sum(-1)
        p_genre = (self.mixture[2] * p_bi + self.mixture[3] * p_tri)[self.genre_of_topic]  # [K, B, T-1]
        p = self.mixture[0] * self.unigram[:, x] + self.mixture[1] * p_shared + p_genre
        with np.errstate(divide="ignore"):
            return np.log(np.moveaxis(p, 0, -1))

    def bayes_token_losses(self, docs: np.ndarray) -> np.ndarray:
        """-log p(x_t | x_<t) of the Bayes-optimal predictor: [B, T-1] nats.

        Forward filtering over the topic: with c_t(z) = log p(z) + sum_{s<t} log P(x_s | z, ...),
        log p(x_t | x_<t) = logsumexp_z(c_t + log P(x_t | z, ...)) - logsumexp_z(c_t).
        """
        logp = self.token_log_probs(docs)
        log_prior = -math.log(self.n_topics)
        cum = np.cumsum(logp, axis=1)
        before = np.concatenate([np.zeros_like(cum[:, :1]), cum[:, :-1]], axis=1) + log_prior
        after = cum + log_prior
        return _logsumexp(before, -1) - _logsumexp(after, -1)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.log(np.sum(np.exp(a - m), axis=axis)) + np.squeeze(m, axis=axis)
