"""Tokenizing throughput of `data=text` on a generated local corpus, 1 process vs a pool.

Usage: .venv/bin/python scripts/bench/bench_tokenize.py [--mb 110] [--work DIR] [--procs 1,2]

Writes a JSONL corpus of --mb megabytes (Zipfian words over a made-up 30k-word lexicon;
nothing is downloaded), trains a 8192-token byte-level BPE on its first 4 MB, then builds
the token cache with each process count in turn (a fresh cache each time) and prints
MB/s, documents/s and tokens/s side by side, plus what a second start costs (the corpus
identity comes from the cache: no pass over the data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1.0 / np.arange(1, 27) ** 0.9
    lexicon = ["".join(rng.choice(letters, size=rng.integers(2, 10), p=weights / weights.sum())) for _ in range(30_000)]
    zipf = 1.0 / np.arange(1, len(lexicon) + 1)
    zipf /= zipf.sum()
    target, docs = int(megabytes * 1e6), 0
    with open(path, "w") as fh:
        while fh.tell() < target:
            words = rng.choice(len(lexicon), size=(200, 400), p=zipf)
            for row in words:
                fh.write(json.dumps({"text": " ".join(lexicon[i] for i in row[: rng.integers(50, 400)])}) + "\n")
                docs += 1
    return docs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=110.0, help="corpus size in MB (default 110)")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--procs", default=f"1,{len(os.sched_getaffinity(0))}", help="process counts to compare")
    args = parser.parse_args()
    from optlaw.data import build_corpus
    from optlaw.data.tokenizer import train_bpe
    from optlaw.data.sources import iter_file_documents

    work = Path(args.work or tempfile.mkdtemp(prefix="optlaw-bench-tokenize-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    t0 = time.perf_counter()
    if not corpus.exists() or corpus.stat().st_size < args.mb * 1e6:
        write_corpus(corpus, args.mb)
    size = corpus.stat().st_size
    print(f"corpus: {size / 1e6:.1f} MB at {corpus} ({time.perf_counter() - t0:.1f} s to write)", flush=True)
    tokenizer = work / "tokenizer.json"
    if not tokenizer.exists():
        sample, total = [], 0
        for doc in iter_file_documents(corpus, "text"):
            sample.append(doc)
            total += len(doc)
            if total > 4e6:
                break
        train_bpe(iter(sample), 8192, tokenizer)
    cores = len(os.sched_getaffinity(0))
    rows = []
    for procs in [int(p) for p in args.procs.split(",")]:
        cfg = dict(name="text", files=[str(corpus)], tokenizer=str(tokenizer), val_tokens=131072, num_proc=procs,
                   cache_dir=str(work / f"cache_{procs}"))
        start = time.perf_counter()
        built = build_corpus(cfg)
        seconds = time.perf_counter() - start
        tokens = built.meta["train_tokens"] + built.meta["val_tokens"]
        again = time.perf_counter()
        build_corpus(cfg)
        reopen = time.perf_counter() - again
        rows.append((procs, seconds, size / 1e6 / seconds, built.meta["documents"] / seconds, tokens / seconds, reopen))
        print(f"{procs} process(es): {seconds:.1f} s, {size / 1e6 / seconds:.2f} MB/s, "
              f"{built.meta['documents'] / seconds:.0f} docs/s, {tokens / seconds:.0f} tokens/s; second start {reopen:.2f} s",
              flush=True)
    print(f"\ncores available: {cores}; load average before the last run: {os.getloadavg()}")
    print("| processes | seconds | MB/s | documents/s | tokens/s | second start (s) |")
    print("|---|---|---|---|---|---|")
    for procs, seconds, mbs, dps, tps, reopen in rows:
        print(f"| {procs} | {seconds:.1f} | {mbs:.2f} | {dps:.0f} | {tps:.0f} | {reopen:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
