"""Research: a finished run's validation loss split by token role and fact frequency.

Roles: filler (incl. MARK) positions, key tokens, value tokens; value loss per band of fact
rank (1-10, 11-100, ...), next to the Bayes loss of the same tokens. Tells whether a run is
limited by the facts it has stored (values of the tail) or by the easy structure.
usage: roles.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from optlaw.data.facts import MARK, FactsCorpus
from optlaw.models import build_model


def role_losses(run_dir: Path, n_seq: int = 512) -> dict:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    ckpts = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    state = torch.load(ckpts[-1], weights_only=True)
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    model.eval()
    corpus = FactsCorpus(cfg.data)
    T = int(cfg.model.seq_len)
    docs, facts = corpus.sample(np.arange(10**9, 10**9 + n_seq, dtype=np.uint64), T + 1, return_facts=True)
    with torch.no_grad():
        logits = model(torch.from_numpy(docs[:, :-1])).logits
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), torch.from_numpy(docs[:, 1:]), reduction="none").numpy()
    bayes = corpus.bayes_token_losses(docs)
    m, r = corpus.key_len, corpus.value_len
    role = np.zeros(loss.shape, dtype=int)  # 0 filler/mark, 1 key, 2 value
    for i, doc in enumerate(docs):
        for t in np.flatnonzero(doc == MARK):
            role[i, t:t + m] = 1
            role[i, t + m:t + m + r] = 2
    role = role[:, :loss.shape[1]]
    fact = facts[:, 1:]
    out = {"all": (loss.mean(), bayes.mean(), 1.0)}
    for k, name in enumerate(("filler", "key", "value")):
        sel = role == k
        out[name] = (loss[sel].mean(), bayes[sel].mean(), sel.mean())
    for lo, hi in ((0, 10), (10, 100), (100, 1000), (1000, 10**9)):
        sel = (role == 2) & (fact >= lo) & (fact < hi)
        if sel.any():
            out[f"value rank {lo + 1}-{min(hi, corpus.n_facts)}"] = (loss[sel].mean(), bayes[sel].mean(), sel.mean())
    return out


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(d)
        for k, (l, b, f) in role_losses(Path(d)).items():
            print(f"  {k:22s} loss {l:.3f}  bayes {b:.3f}  share {f:.3f}  excess contrib {(l - b) * f:.3f}")
