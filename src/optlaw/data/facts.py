"""The facts corpus: a Zipf-weighted table of key -> value facts inside bigram filler text.

A document (one training sequence, BOS first) is a stream of units. At every free position
  with probability q (``fact_rate``) a record starts:  MARK k_1 .. k_m v_1 .. v_r
      the fact f is drawn from Zipf(a) over the M facts, p_f = (f+1)^-a / H_{M,a};
      its key k_1..k_m is m content tokens, distinct between facts; its value v_1..v_r is
      r content tokens fixed per fact (each replaced by a uniform content token with
      probability ``value_noise``);
  otherwise one filler token is drawn from a sparse bigram row S(x | x_{t-1}).
Records run to their end unless the document ends first.

Why: the loss of real text keeps falling with parameters because it holds a long tail of
rarely needed knowledge. Here that tail is explicit. A model that has stored the k most
frequent facts still pays ~r log A nats on every record of the others, whose share is the
Zipf tail p(f > k) ~ k^(1-a). Storing k facts takes parameters (k grows with N) and every
fact must be seen often enough to be learned (k grows like D^(1/a)), so the loss falls as a
power law in both N and D (the quanta/associative-memory picture: Hutter 2021; Michaud et
al. 2023; Cabannes et al. 2023), with the cheap bigram filler and the key marginals as the
"easy" structure learned first.

The entropy floor is exact, and needs no filtering: MARK is a dedicated token and records
have a fixed length, so the role of every position (free, key j, value j) is a function of
the prefix, and nothing else is latent. With W(k_1..k_j) the total weight of the facts whose
key starts with k_1..k_j (W() = 1), the Bayes-optimal predictor is
  free position:  P(MARK) = q,  P(x) = (1 - q) S(x | x_{t-1})
  key token j:    P(k_j | MARK k_<j) = W(k_1..k_j) / W(k_1..k_{j-1})
  value token j:  P(v | fact f) = (1 - eps) [v = v_j(f)] + eps / A
(A = V - 2 content tokens). The floor is that loss averaged over the validation split.
See docs/data.md for the math and the measured regime.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optlaw.config import as_config
from optlaw.config.data import FactsDataConfig
from optlaw.data.keys import uniforms
from optlaw.data.sampled import SampledCorpus
from optlaw.data.synthetic import _zipf

BOS, MARK = 0, 1
FIRST_CONTENT = 2  # content tokens are 2 .. V-1
# Independent random streams per sequence.
_S_MARK, _S_FACT, _S_FILLER, _S_NOISE, _S_NOISE_TOKEN = range(5)


class FactsCorpus(SampledCorpus):
    """Seeded, deterministic fact-table corpus with an exact entropy floor."""

    def __init__(self, data_cfg: Any):
        cfg = as_config(FactsDataConfig, data_cfg, "data")  # checks the numbers (FactsDataConfig.check)
        self.name = "facts"
        self.vocab_size = cfg.vocab_size
        self.structure_seed = cfg.seed
        self.n_facts = cfg.n_facts
        self.fact_zipf = cfg.fact_zipf
        self.key_len = cfg.key_len
        self.value_len = cfg.value_len
        self.fact_rate = cfg.fact_rate
        self.value_noise = cfg.value_noise
        self.filler_candidates = cfg.filler_candidates
        self.candidate_exponent = cfg.candidate_exponent
        self.zipf_exponent = cfg.zipf_exponent
        self.floor_seq_len = cfg.seq_len
        self.floor_tokens = cfg.val_tokens
        self.n_content = self.vocab_size - FIRST_CONTENT
        self._build_tables()
        self._init_cache()

    # ---- the generator's tables (depend only on the structure seed) ----
    def _build_tables(self) -> None:
        rng = np.random.default_rng(self.structure_seed)
        V, A, M, m, r = self.vocab_size, self.n_content, self.n_facts, self.key_len, self.value_len
        self.fact_p = _zipf(M, self.fact_zipf)
        self.fact_cdf = np.cumsum(self.fact_p)
        # Keys: distinct codes in [0, A^m), digit j (base A, most significant first) is key token j.
        self.key_code = rng.choice(A ** m, size=M, replace=False).astype(np.int64)
        digits = (self.key_code[:, None] // A ** np.arange(m - 1, -1, -1)[None, :]) % A
        values = rng.integers(0, A, size=(M, r))
        self.record = (FIRST_CONTENT + np.concatenate([digits, values], axis=1)).astype(np.int64)  # [M, m + r]
        # W(prefix of length j) for j < m as dense tables; full keys by binary search.
        self.prefix_weight = [np.ones(1)] + [
            np.bincount(self.key_code // A ** (m - j), weights=self.fact_p, minlength=A ** j) for j in range(1, m)
        ]
        order = np.argsort(self.key_code)
        self._sorted_codes, self._fact_of_sorted = self.key_code[order], order
        # Filler rows: successors from the global Zipf law over content tokens (id 2 = most frequent).
        base = _zipf(A, self.zipf_exponent)
        self.filler_cand = FIRST_CONTENT + rng.choice(A, size=(V, self.filler_candidates), p=base)
        self.filler_w = _zipf(self.filler_candidates, self.candidate_exponent)

    def fact_of_key(self, code: np.ndarray) -> np.ndarray:
        """Fact index of each key code, -1 where no fact has that key."""
        pos = np.minimum(np.searchsorted(self._sorted_codes, code), len(self._sorted_codes) - 1)
        return np.where(self._sorted_codes[pos] == code, self._fact_of_sorted[pos], -1)

    # ---- sampling ----
    def sample(self, keys: np.ndarray, length: int, return_facts: bool = False):
        """Documents [len(keys), length] (BOS first), one per key; pure in the keys.
        With ``return_facts`` also the fact of the record each position belongs to (-1: filler)."""
        B, T = len(keys), length
        m, r = self.key_len, self.value_len
        starts = uniforms(keys, T, _S_MARK).T < self.fact_rate  # [T, B], time-major
        drawn = np.minimum(np.searchsorted(self.fact_cdf, uniforms(keys, T, _S_FACT).T, side="right"), self.n_facts - 1)
        fj = np.minimum(np.searchsorted(np.cumsum(self.filler_w), uniforms(keys, T, _S_FILLER).T, side="right"),
                        self.filler_candidates - 1)
        noisy = uniforms(keys, T, _S_NOISE).T < self.value_noise
        noise_tok = FIRST_CONTENT + np.minimum((uniforms(keys, T, _S_NOISE_TOKEN).T * self.n_content).astype(np.int64),
                                               self.n_content - 1)
        record, filler = self.record, self.filler_cand
        x = np.empty((T, B), dtype=np.int64)
        facts = np.full((T, B), -1, dtype=np.int64)
        x[0] = BOS
        phase = np.zeros(B, dtype=np.int64)  # 0: free; j in 1..m+r: the record's j-th token comes next
        fact = np.zeros(B, dtype=np.int64)
        for t in range(1, T):  # sequential in t by nature; vectorised over the batch
            free = phase == 0
            start = free & starts[t]
            fact = np.where(start, drawn[t], fact)
            in_record = ~free
            tok = np.where(in_record, record[fact, np.maximum(phase - 1, 0)], filler[x[t - 1], fj[t]])
            tok = np.where(in_record & (phase > m) & noisy[t], noise_tok[t], tok)
            x[t] = np.where(start, MARK, tok)
            facts[t] = np.where(start | in_record, fact, -1)
            phase = np.where(start, 1, np.where(free, 0, (phase + 1) % (m + r + 1)))
        x, facts = np.ascontiguousarray(x.T), np.ascontiguousarray(facts.T)
        return (x, facts) if return_facts else x

    # ---- exact Bayes-optimal loss ----
    def bayes_token_losses(self, docs: np.ndarray) -> np.ndarray:
        """-log p(x_t | x_<t) of the Bayes-optimal predictor: [B, T-1] nats (inf where p = 0).

        The prefix is parsed as the sampler wrote it: a free position opens a record on MARK,
        key tokens extend the key code, and after k_m the fact is known (docstring above)."""
        docs = np.asarray(docs, dtype=np.int64)
        B, T = docs.shape
        A, m, r = self.n_content, self.key_len, self.value_len
        q, eps = self.fact_rate, self.value_noise
        out = np.empty((B, T - 1))
        phase = np.zeros(B, dtype=np.int64)
        code = np.zeros(B, dtype=np.int64)
        fact = np.full(B, -1, dtype=np.int64)
        with np.errstate(divide="ignore"):
            log_filler = np.log(1 - q) + np.log(self._filler_probs(docs[:, :-1], docs[:, 1:]))  # [B, T-1]
            log_q = math.log(q)
            for t in range(1, T):
                x, prev_phase = docs[:, t], phase
                content = (x >= FIRST_CONTENT) & (x < self.vocab_size)
                digit = np.where(content, x - FIRST_CONTENT, 0)
                logp = np.full(B, -np.inf)
                # free positions
                free = phase == 0
                logp = np.where(free & (x == MARK), log_q, logp)
                logp = np.where(free & (x != MARK), log_filler[:, t - 1], logp)
                # key positions: ratio of prefix weights
                is_key = (phase >= 1) & (phase <= m) & content
                new_code = code * A + digit
                w_before = self._prefix_weight(np.maximum(phase - 1, 0), code)
                last_key = is_key & (phase == m)
                fact = np.where(last_key, self.fact_of_key(new_code), fact)
                w_after = np.where(last_key, np.where(fact >= 0, self.fact_p[np.maximum(fact, 0)], 0.0),
                                   self._prefix_weight(np.minimum(phase, m - 1), new_code))
                logp = np.where(is_key, np.log(w_after) - np.log(np.where(w_before > 0, w_before, 1.0)), logp)
                # value positions
                is_value = (phase > m) & content & (fact >= 0)
                target = self.record[np.maximum(fact, 0), np.clip(phase - 1, 0, m + r - 1)]
                p_value = (1 - eps) * (x == target) + eps / A
                logp = np.where(is_value, np.log(p_value), logp)
                out[:, t - 1] = -logp
                # advance the parse
                code = np.where(free, 0, np.where(is_key, new_code, code))
                phase = np.where(free, np.where(x == MARK, 1, 0), (prev_phase + 1) % (m + r + 1))
        return out

    def _prefix_weight(self, length: np.ndarray, code: np.ndarray) -> np.ndarray:
        """W(prefix) for prefixes of ``length`` < m tokens given as base-A codes."""
        out = np.ones(len(code))
        for j in range(1, self.key_len):
            sel = length == j
            if sel.any():
                out[sel] = self.prefix_weight[j][np.clip(code[sel], 0, len(self.prefix_weight[j]) - 1)]
        return out

    def _filler_probs(self, prev: np.ndarray, x: np.ndarray) -> np.ndarray:
        """S(x | prev): the summed weights of the row's candidates equal to x."""
        return ((self.filler_cand[prev] == x[..., None]) * self.filler_w).sum(-1)
