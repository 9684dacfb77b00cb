"""The facts corpus: pure batches, an exact floor that matches the sampler, config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optlaw.config import compose
from optlaw.data import build_corpus
from optlaw.data.facts import BOS, FIRST_CONTENT, MARK, FactsCorpus
from optlaw.errors import ConfigError

SMALL = {"name": "facts", "vocab_size": 12, "n_facts": 60, "fact_zipf": 1.2, "key_len": 2, "value_len": 2,
         "fact_rate": 0.4, "filler_candidates": 3, "seq_len": 24, "val_tokens": 24 * 50}


def test_config_builds_with_model_vocab_and_batches_start_with_bos():
    cfg = compose("train", ["data=facts", "model.vocab_size=128", "model.seq_len=64", "eval.tokens=4096"])
    corpus = build_corpus(cfg.data)
    assert corpus.name == "facts" and corpus.vocab_size == cfg.model.vocab_size
    assert (corpus.floor_seq_len, corpus.floor_tokens) == (64, 4096)
    batch = corpus.train_batch(0, 0, 0, 0, 1, 8, 64)
    assert batch.dtype == torch.long and batch.shape == (8, 65)
    assert int(batch.min()) >= 0 and int(batch.max()) < corpus.vocab_size
    assert (batch[:, 0] == BOS).all() and (batch[:, 1:] != BOS).all()
    assert 0.0 < corpus.entropy_floor_nats < math.log(corpus.vocab_size)


def test_train_batch_is_pure_and_split_invariant():
    a, b = FactsCorpus(SMALL), FactsCorpus(SMALL)
    x = a.train_batch(3, 41, 1, 0, 1, 4, 24)
    a.train_batch(3, 900, 0, 0, 1, 4, 24)
    assert torch.equal(x, a.train_batch(3, 41, 1, 0, 1, 4, 24))
    assert torch.equal(x, b.train_batch(3, 41, 1, 0, 1, 4, 24))
    assert not torch.equal(x, a.train_batch(4, 41, 1, 0, 1, 4, 24))
    single = torch.cat([a.train_batch(0, 7, m, 0, 1, 4, 24) for m in range(4)])
    two_ranks = torch.cat([a.train_batch(0, 7, m, r, 2, 4, 24) for m in range(2) for r in range(2)])
    assert torch.equal(single, two_ranks)


def test_records_are_the_table_rows_of_their_facts():
    corpus = FactsCorpus(SMALL)
    docs, facts = corpus.sample(np.arange(300, dtype=np.uint64), 25, return_facts=True)
    width = corpus.key_len + corpus.value_len
    seen = 0
    for doc, fact in zip(docs, facts):
        for t in np.flatnonzero(doc == MARK):
            row = doc[t + 1:t + 1 + width]
            assert (fact[t:t + 1 + len(row)] == fact[t]).all()
            assert np.array_equal(row, corpus.record[fact[t], :len(row)])
            seen += 1
    assert seen > 300
    assert (docs[:, 1:] >= MARK).all()


def _next_token_probs(corpus: FactsCorpus, prefix: np.ndarray) -> np.ndarray:
    """P(x | prefix) of the Bayes predictor for every token x: [V]."""
    V = corpus.vocab_size
    docs = np.concatenate([np.repeat(prefix[None, :], V, axis=0), np.arange(V)[:, None]], axis=1)
    return np.exp(-corpus.bayes_token_losses(docs)[:, -1])


def test_next_token_probabilities_are_normalised_in_every_context():
    corpus = FactsCorpus(dict(SMALL, value_noise=0.1, key_len=3, n_facts=200))
    docs = corpus.sample(np.arange(5, dtype=np.uint64), 25)
    for doc in docs:
        for t in range(1, 25):  # free, key and value positions all occur
            probs = _next_token_probs(corpus, doc[:t])
            assert math.isclose(probs.sum(), 1.0, rel_tol=1e-9)
            assert probs[BOS] == 0.0


def test_sampler_draws_from_the_probabilities_the_floor_uses():
    # If sampling and scoring disagreed, the mean loss of sampled tokens would differ from the
    # mean entropy of the distributions the floor says they came from.
    corpus = FactsCorpus(dict(SMALL, value_noise=0.2))
    docs = corpus.sample(np.arange(150, dtype=np.uint64), 13)
    losses = corpus.bayes_token_losses(docs)
    entropies = []
    for doc in docs:
        for t in range(1, docs.shape[1]):
            p = _next_token_probs(corpus, doc[:t])
            entropies.append(-(p[p > 0] * np.log(p[p > 0])).sum())
    standard_error = losses.std() / math.sqrt(losses.size)
    assert abs(losses.mean() - np.mean(entropies)) < 4 * standard_error


def _brute_force_log_prob(corpus: FactsCorpus, doc: np.ndarray) -> float:
    """log p(doc) written out with plain loops over the generator's choices."""
    m, r, q, eps, A = corpus.key_len, corpus.value_len, corpus.fact_rate, corpus.value_noise, corpus.n_content
    logp, t = 0.0, 1
    while t < len(doc):
        if doc[t] != MARK:  # a filler token
            p = sum(w for c, w in zip(corpus.filler_cand[doc[t - 1]], corpus.filler_w) if c == doc[t])
            logp += math.log((1 - q) * p)
            t += 1
            continue
        logp += math.log(q)
        record = doc[t + 1:t + 1 + m + r]
        # p(record prefix) = sum over facts of p_f * P(the observed tokens | f)
        total = 0.0
        for f in range(corpus.n_facts):
            p = corpus.fact_p[f]
            for j, x in enumerate(record):
                if j < m:
                    p *= float(corpus.record[f, j] == x)
                else:
                    p *= (1 - eps) * float(corpus.record[f, j] == x) + eps / A
            total += p
        logp += math.log(total)
        t += 1 + m + r
    return logp


def test_bayes_losses_sum_to_the_log_probability_of_the_document():
    corpus = FactsCorpus(dict(SMALL, value_noise=0.1))
    docs = corpus.sample(np.arange(6, dtype=np.uint64), 25)
    losses = corpus.bayes_token_losses(docs)
    for doc, loss in zip(docs, losses):
        assert math.isclose(loss.sum(), -_brute_force_log_prob(corpus, doc), rel_tol=1e-9)


def test_key_losses_are_the_fact_surprisals_and_values_are_free():
    # Closed form: the m key losses of a complete record add up to -log p_f, and without
    # value noise the value tokens cost nothing; so the mean key loss per record is H(Zipf).
    corpus = FactsCorpus(dict(SMALL, n_facts=50, fact_rate=0.9, seq_len=64))
    docs, facts = corpus.sample(np.arange(400, dtype=np.uint64), 65, return_facts=True)
    losses = corpus.bayes_token_losses(docs)
    m, r = corpus.key_len, corpus.value_len
    surprisal = []
    for doc, fact, loss in zip(docs, facts, losses):
        for t in np.flatnonzero(doc == MARK):
            if t + m + r < len(doc):
                assert math.isclose(loss[t:t + m].sum(), -math.log(corpus.fact_p[fact[t]]), rel_tol=1e-9)
                assert np.all(loss[t + m:t + m + r] == 0.0)
                surprisal.append(loss[t:t + m].sum())
    surprisal = np.array(surprisal)
    entropy = float(-(corpus.fact_p * np.log(corpus.fact_p)).sum())
    assert abs(surprisal.mean() - entropy) < 4 * surprisal.std() / math.sqrt(len(surprisal))


def test_bad_facts_config_is_one_line_config_error():
    with pytest.raises(ConfigError, match="data.n_facts"):
        FactsCorpus(dict(SMALL, n_facts=101))  # 10 content tokens, 2-token keys: 100 keys
    with pytest.raises(ConfigError, match="data.fact_rate"):
        FactsCorpus(dict(SMALL, fact_rate=1.0))
    with pytest.raises(ConfigError, match="data.value_noise"):
        FactsCorpus(dict(SMALL, value_noise=-0.1))
    with pytest.raises(ConfigError, match="data.key_len"):
        FactsCorpus(dict(SMALL, key_len=0))


def test_frequent_facts_are_learned_before_rare_ones():
    # The point of the corpus: what a small model has learned is the head of the fact table.
    from optlaw.models import build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        cfg = dict(SMALL, vocab_size=32, n_facts=400, fact_zipf=1.3, fact_rate=0.9, seq_len=32)
        corpus = FactsCorpus(cfg)
        model = build_model(dict(family="llama", n_layers=2, d_model=32, n_heads=2, ffn_hidden=64,
                                 vocab_size=32, seq_len=32))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        for step in range(150):
            batch = corpus.train_batch(0, step, 0, 0, 1, 32, 32)
            logits = model(batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 32), batch[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        docs, facts = corpus.sample(np.arange(10**6, 10**6 + 400, dtype=np.uint64), 33, return_facts=True)
        with torch.no_grad():
            logits = model(torch.from_numpy(docs[:, :-1])).logits
        token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), torch.from_numpy(docs[:, 1:]),
                                                       reduction="none").numpy()
        # value positions: the last value_len tokens of each record
        is_value = np.zeros_like(docs[:, 1:], dtype=bool)
        for i, doc in enumerate(docs):
            for t in np.flatnonzero(doc == MARK):
                is_value[i, t + corpus.key_len:t + corpus.key_len + corpus.value_len] = True
        fact_of_target = facts[:, 1:]
        head = is_value & (fact_of_target >= 0) & (fact_of_target < 5)
        tail = is_value & (fact_of_target >= 100)
        assert head.sum() > 50 and tail.sum() > 50
        # Measured: ~0.6 nats on the 5 most frequent facts' values, ~3.3 (near log 30) on the tail.
        assert token_loss[head].mean() < token_loss[tail].mean() - 1.0
    finally:
        torch.set_num_threads(threads)
