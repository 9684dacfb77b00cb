"""Research: power-law slopes of the reducible loss, L - E, along the grid's slices.

At each fixed D: least-squares slope of log(L - E) on log N (and at each fixed N, on log D),
with R^2, for E = the shared fit's E and for E = the exact entropy floor (model-free).
usage: exponents.py GRID.csv FIT.json FLOOR
"""
import csv
import json
import sys

import numpy as np

rows = list(csv.DictReader(open(sys.argv[1])))
E_fit = json.load(open(sys.argv[2]))["shared"]["E"]
floor = float(sys.argv[3])


def slope(x, y):
    X, Y = np.log(x), np.log(y)
    k, c = np.polyfit(X, Y, 1)
    r2 = 1 - np.sum((Y - (k * X + c)) ** 2) / np.sum((Y - Y.mean()) ** 2)
    return -k, r2


for label, E in (("E_fit", E_fit), ("floor", floor)):
    print(f"== reducible loss L - {label} ({E:.3f})")
    for opt in sorted({r["optimizer"] for r in rows}):
        sub = [(float(r["N"]), float(r["D"]), float(r["loss"])) for r in rows if r["optimizer"] == opt]
        out = []
        for axis, other in (("N", 1), ("D", 0)):
            for fixed in sorted({s[other] for s in sub}):
                sl = [s for s in sub if s[other] == fixed]
                if len(sl) < 3:
                    continue
                x = np.array([s[0] if axis == "N" else s[1] for s in sl])
                y = np.array([s[2] - E for s in sl])
                if (y <= 0).any():
                    out.append(f"{axis}-slope@{fixed:.3g}: n/a (L<=E)")
                    continue
                k, r2 = slope(x, y)
                out.append(f"{axis}-slope@{'D' if axis == 'N' else 'N'}={fixed:.3g} ({len(sl)} pts): {k:.3f} (R2 {r2:.3f})")
        print(f"  {opt}:\n    " + "\n    ".join(out))
