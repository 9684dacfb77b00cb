"""What a study's numbers support, in plain words: the Conclusions of report.md and the CLI.

Built from the fit.json document alone (so a saved fit.json gives the same words). A
statement is made only from a fit that is not ``not identified``; a weak one says so; every
factor comes with its 95% interval and the range of N and D it rests on. What the data do not
support (fits not identified, a rho that drifts, extrapolation) is listed beside it.
"""

from __future__ import annotations

import math

from optlaw.fit.identify import Verdict


def si(x: float | None) -> str:
    """1.34e8 -> '134M' (model sizes and token counts in the field's usual units)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def num(x: float | None, spec: str = ".3g") -> str:
    return "unbounded" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def interval(ci) -> str:
    return "[no interval]" if not ci else f"[{num(ci[0])}, {num(ci[1])}]"


def _verdict(entry: dict | None) -> tuple[str, list[str]]:
    v = (entry or {}).get("identifiability") or {}
    return v.get("verdict", str(Verdict.IDENTIFIED)), v.get("reasons", [])


def _rho_clause(ref: str, name: str, value: float, ci) -> tuple[str, bool]:
    """One rho in words, and whether its interval excludes 1."""
    what = "tokens" if name == "rho_D" else "parameters"
    if ci and ci[0] is not None and ci[1] is not None and ci[0] > 1:
        return f"{num(value)}x {interval(ci)} fewer {what} than {ref} for the same loss ({name})", True
    if ci and ci[0] is not None and ci[1] is not None and ci[1] < 1:
        inv = [1 / ci[1], 1 / ci[0] if ci[0] > 0 else None]
        return f"{num(1 / value)}x {interval(inv)} more {what} than {ref} for the same loss ({name})", True
    return f"{name} = {num(value)} {interval(ci)}, not resolved from 1", False


def _optimizer_sentence(opt: str, ref: str, o: dict, variant: str, scope: str) -> str:
    clauses = [_rho_clause(ref, name, o[name], o.get(f"{name}_ci"))
               for name, free in (("rho_D", variant in ("full", "rho_D")), ("rho_N", variant in ("full", "rho_N")))
               if free]
    resolved = [c for c, ok in clauses if ok]
    rest = [c for c, ok in clauses if not ok]
    if resolved:
        return f"{opt} uses " + " and ".join(resolved) + f" {scope}" + (f" ({'; '.join(rest)})" if rest else "") + "."
    return f"{opt} and {ref} are not resolved apart: " + "; ".join(rest) + f" {scope}."


def conclusions(doc: dict) -> dict:
    """{'supported': [...], 'not_supported': [...]} sentences for a fit.json document."""
    yes, no = [], []
    scope = ""
    N, D = doc.get("data_range", {}).get("N"), doc.get("data_range", {}).get("D")
    if N and D:
        scope = f"at N {si(N[0])}-{si(N[1])}, D {si(D[0])}-{si(D[1])}"
    shared = doc.get("shared")
    ref = doc.get("reference")
    constancy = doc.get("rho_constancy") or {}
    per_opt = constancy.get("optimizers", {})
    if shared:
        verdict, reasons = _verdict(shared)
        if verdict == Verdict.NOT_IDENTIFIED:
            no.append(f"The shared law is not identified by these data ({'; '.join(reasons)}): its rho's are "
                      "not conclusions.")
        else:
            unmeasured: list[str] = []
            if verdict == Verdict.WEAK:
                yes.append(f"The shared law is only weakly identified ({'; '.join(reasons)}): read its factors "
                           "with that in mind.")
            for opt, o in doc.get("optimizers", {}).items():
                if opt == ref:
                    continue
                ov, oreasons = _verdict(o)
                if ov == Verdict.NOT_IDENTIFIED:
                    no.append(f"{opt}: its rho's are not identified ({'; '.join(oreasons)}).")
                    continue
                weak = f" [weak: {'; '.join(oreasons)}]" if ov == Verdict.WEAK else ""
                yes.append(_optimizer_sentence(opt, ref, o, doc["variant"], scope) + weak)
                drift = per_opt.get(opt, {})
                g, gci, gp = drift.get("rho_D_exponent_N"), drift.get("rho_D_exponent_N_ci"), \
                    drift.get("rho_D_exponent_N_p_value")
                eff = drift.get("effective_rho_D_by_N") or []
                if g is not None and gp is not None and gp < constancy.get("level", 0.05):
                    trend = "shrinks" if g < 0 else "grows"
                    data = (f"; from the data alone rho_D is {num(eff[0]['rho_D'])} at {si(eff[0]['N'])} and "
                            f"{num(eff[-1]['rho_D'])} at {si(eff[-1]['N'])}") if len(eff) >= 2 else ""
                    law_eff = {row["N"]: row["rho_D"] for row in drift.get("law_effective_rho_D_by_N") or []}
                    if data and eff[0]["N"] in law_eff and eff[-1]["N"] in law_eff:
                        # the comparable number: the constant law's own losses through the same inversion
                        data += (f" where the constant law gives {num(law_eff[eff[0]['N']])} and "
                                 f"{num(law_eff[eff[-1]['N']])}")
                    yes.append(f"{opt}'s token factor against {ref} {trend} with N: rho_D ~ N^{num(g, '.2f')} "
                               f"{interval(gci)} (p = {num(gp, '.2g')}){data}.")
                if doc.get("law") == "compute" and o.get("compute_multiplier") is not None:
                    compute = doc.get("compute") or {}
                    if compute.get("cost_measured"):
                        yes.append(f"{ref} needs {num(o['compute_multiplier'])}x "
                                   f"{interval(o.get('compute_multiplier_ci'))} the compute to match {opt}'s "
                                   f"compute-optimal loss ({compute.get('cost_basis')}){weak}.")
                    else:
                        unmeasured.append(f"{opt} {num(o['compute_multiplier'])}")
            if unmeasured:
                no.append(f"The compute multipliers ({', '.join(unmeasured)}) are not measured compute savings: "
                          f"{(doc.get('compute') or {}).get('cost_basis')}, so they count loss-per-token gains only.")
        if verdict == Verdict.NOT_IDENTIFIED:
            constancy = {}
        main = constancy.get("p_value")
        tests = constancy.get("tests", {})
        t = tests.get("rho_D(N)") or {}
        if main is not None:
            if main < constancy.get("level", 0.05):
                no.append(f"Constant rho_D across N is rejected (F test, p = {num(main, '.2g')}): the law's constant "
                          "rho's describe the middle of the data and should not be extrapolated in N.")
            else:
                yes.append(f"No evidence that rho_D changes with N (F test, p = {num(main, '.2g')}, "
                           f"df {t.get('df')}); with few sizes the test has little power.")
        elif t.get("note"):
            no.append(f"Constancy of rho_D across N was not tested: {t['note']}.")
        errors = doc.get("holdout_error") or {}
        if "shared" in errors and "separate" in errors and len(doc.get("optimizers", {})) > 1:
            yes.append(f"On the held-out cells ({doc.get('holdout_spec')}) the shared law predicts with RMSE of "
                       f"log loss {num(errors['shared']['rmse_log'])} against {num(errors['separate']['rmse_log'])} "
                       "for separate laws.")
    for opt, s in (doc.get("separate") or {}).items():
        verdict, reasons = _verdict(s)
        if verdict == Verdict.NOT_IDENTIFIED:
            no.append(f"The separate law of {opt} is not identified ({'; '.join(reasons)}): its exponents are "
                      "not conclusions.")
    if scope:
        no.append(f"Nothing here is measured outside N {si(N[0])}-{si(N[1])} and D {si(D[0])}-{si(D[1])}: "
                  "predictions beyond are extrapolations.")
    return {"supported": yes, "not_supported": no}
