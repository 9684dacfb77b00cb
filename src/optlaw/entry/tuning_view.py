"""The tuning table of `optlaw sweep` and `optlaw status`: per cell its round, bracket, winner and verdict."""

from __future__ import annotations

from optlaw.sweep.tuning_state import TuningState


def _value(value) -> str:
    return "-" if value is None else f"{float(value):.4g}"


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def format_tuning(state: TuningState) -> str:
    """One line per cell: role, round, the bracket of its last key walked, the winner so far, its loss, its state."""
    counts: dict[str, int] = {}
    for cell in state.cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines = [f"tuning: {len(state.cells)} cells ({summary}); " + ("complete" if state.complete else
             f"{len(state.pending)} point(s) of the current rounds unfinished")]
    width = max([len(c.spec.label) for c in state.cells] + [4])
    lines.append(f"  {'cell':<{width}}  {'role':<9} {'round':>5}  {'bracket':<22} {'winner':<28} {'loss':>8}  state")
    for cell in state.cells:
        walk = cell.coordinates[-1] if cell.coordinates else None
        bracket = "-"
        if walk is not None and walk.bracket_values() is not None:
            low, high = walk.bracket_values()
            bracket = f"{_short(walk.key)} [{_value(low)}, {_value(high)}]"
        setting = cell.setting
        if not setting and walk is not None and walk.losses:  # still tuning: the best so far
            best = min(walk.losses, key=walk.losses.get)
            setting = {walk.key: walk.values[best]}
            loss = walk.losses[best]
        else:
            loss = cell.winner_loss
        winner = ", ".join(f"{_short(k)}={_value(v)}" for k, v in setting.items())
        winner = winner or ("as configured" if cell.spec.role == "fixed" else "-")
        verdict = cell.status + (" (at the edge)" if cell.finished and cell.at_edge else "")
        note = f"  {cell.note}" if cell.note and cell.status not in ("done", "resolved") else ""
        lines.append(f"  {cell.spec.label:<{width}}  {cell.spec.role:<9} {cell.round:>5}  {bracket:<22} {winner:<28} "
                     f"{_value(loss):>8}  {verdict}{note}")
    for law in state.laws.values():
        lines.append(f"  law: {law.summary()}")
    return "\n".join(lines)


def progress_line(state: TuningState, to_run: list[str]) -> str:
    """After each round: how many cells are finished and what this round runs."""
    finished = sum(1 for c in state.cells if c.finished)
    rounds = sorted({c.round for c in state.cells if not c.finished and c.round})
    where = f" (cells in round {rounds[0]}" + (f"-{rounds[-1]}" if len(rounds) > 1 else "") + ")" if rounds else ""
    return f"tuning: {finished} of {len(state.cells)} cells finished; next: {len(to_run)} point(s) to run{where}"
