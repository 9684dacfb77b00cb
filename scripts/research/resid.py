"""Research: print a fit.json's shared-law residuals as an N x D table per optimizer (loss - fit, milli-nats)."""
import json
import sys

doc = json.load(open(sys.argv[1]))
res = doc["residuals"]["shared"]
for opt, block in res.items():
    rows = block["residuals"] if isinstance(block, dict) else block
    Ns = sorted({r["N"] for r in rows}); Ds = sorted({r["D"] for r in rows})
    cell = {(r["N"], r["D"]): 1000 * (r["loss"] - r["predicted"]) for r in rows}
    print(opt, " ".join(f"{d / 1e3:7.0f}k" for d in Ds))
    for n in Ns:
        print(f"  {n:7.0f}", " ".join(f"{cell[(n, d)]:+8.1f}" if (n, d) in cell else "       ." for d in Ds))
