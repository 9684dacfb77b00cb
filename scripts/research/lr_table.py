"""Research: val loss by lr_mult for every (optimizer, width, budget) in JSONL files; * marks the best."""
import collections
import json
import sys

cells = collections.defaultdict(dict)
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)
        ov = dict(o.split("=", 1) for o in r["overrides"] if "=" in o)
        if r["val_loss"] is None:
            continue
        cells[(ov["optimizer"], int(ov["model.d_model"]), int(ov["budget.tokens"]))][float(ov.get("optimizer.lr_mult", 1))] = r["val_loss"]
for key in sorted(cells):
    lrs = cells[key]
    if len(lrs) < 2:
        continue
    best = min(lrs, key=lrs.get)
    print(f"{key[0]:8s} d{key[1]:<3d} D={key[2] // 1024}k  " + "  ".join(
        f"{lr:g}:{v:.3f}{'*' if lr == best else ' '}" for lr, v in sorted(lrs.items())))
