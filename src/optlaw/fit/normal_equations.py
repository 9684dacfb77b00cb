"""Damped Gauss-Newton systems (J^T U J + damping) x = -J^T U r for a batch of fits.

Every law optlaw fits has the same per-point shape: a point depends on 5 of the P
parameters, (alpha, beta, E, its A, its B), its "slots". Points that share the same
(A, B) pair (a "combo", one per optimizer in the shared law) are summed first, with one
dense matrix product over points; everything after that works on those few sums.

Two ways to solve, chosen once per problem:
- block: when every A (and every B) is either shared by all combos or owned by one,
  the system is an arrowhead, a small global block (alpha, beta, E and any shared A/B)
  plus one 1x1 or 2x2 block per combo. Eliminating the combo blocks (Schur complement)
  costs O(combos) per fit instead of a P x P factorisation. For the 25-parameter shared
  law this was most of the bootstrap's time before (numpy's batched LU on 1000 25x25
  systems, a few per step); this is why it is written out here rather than left to LAPACK.
- dense: any other layout, the P x P matrix assembled by a fixed sparse map and solved by
  numpy's batched LU.

Coordinates marked not free (a coefficient held at zero) get a zero step.

Sums from shares (``share_sums``): in every law a point's exponent derivatives are its
A and B derivatives times -log N and -log D, so the 15 slot products are 6 products of the
shares (E, A, B) times fixed per-point factors (1, log N, log N^2, ...). Their per-combo sums
are then 9 matrix products with constant (points x combos*factors) matrices, one BLAS call
each, instead of 15 + 5 elementwise products and a segmented sum over points (measured on
the Marin bootstrap: about half of every polish step's time before).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

N_SLOTS = 5
_UPPER = np.triu_indices(N_SLOTS)       # the 15 slot pairs (a <= b) of a symmetric 5 x 5 block
_PAIR = np.zeros((N_SLOTS, N_SLOTS), dtype=int)   # slot pair -> its index among the 15, both orders
_PAIR[_UPPER] = _PAIR[_UPPER[::-1]] = np.arange(len(_UPPER[0]))
LEVENBERG_FLOOR = 1e-10                 # relative damping always added: flat directions stay solvable


class NormalEquations:
    """Per-problem constants; ``assemble`` turns per-point derivatives into a solvable system."""

    def __init__(self, n_points: int, a_group: np.ndarray, b_group: np.ndarray, n_a: int, n_b: int,
                 log_n: np.ndarray | None = None, log_d: np.ndarray | None = None):
        n = n_points
        self.P = 2 + 1 + n_a + n_b
        combos, combo_of_point = np.unique(np.stack([a_group, b_group], axis=1), axis=0, return_inverse=True)
        self.C = C = len(combos)
        self.sum_by_combo = np.zeros((n, C))
        self.sum_by_combo[np.arange(n), combo_of_point.ravel()] = 1.0
        # Points already grouped by combo (tables come sorted by optimizer): contiguous sums
        # (np.add.reduceat, ~15 adds a point) instead of the product with the (n, C) indicator
        # (15 C multiply-adds a point); measured 5-10% of a Marin bootstrap.
        combo_of_point = combo_of_point.ravel()
        starts = np.flatnonzero(np.r_[True, np.diff(combo_of_point) != 0])
        contiguous = len(starts) == C and np.array_equal(combo_of_point[starts], np.arange(C))
        self.combo_starts = starts if contiguous and n > 0 else None
        # parameter index of each slot, per combo
        self.slot_param = np.stack([np.zeros(C, int), np.ones(C, int), np.full(C, 2), 3 + combos[:, 0],
                                    3 + n_a + combos[:, 1]], axis=1)
        self.global_slots, self.local_slots = self._split_slots(combos, n_a, n_b)
        self.block = bool(self.local_slots) and C > 1
        gs, ls = self.global_slots, self.local_slots
        # slot-pair indices of the arrowhead's global block, couplings and combo diagonals
        self.block_pairs = (_PAIR[np.ix_(gs, gs)], _PAIR[np.ix_(ls, gs)], _PAIR[ls, ls]) if self.block else None
        self._buffer: np.ndarray | None = None
        if not self.block:
            self._dense_maps()
        self._factor_maps = None if log_n is None else self._share_maps(np.asarray(log_n), np.asarray(log_d))

    def _share_maps(self, log_n: np.ndarray, log_d: np.ndarray) -> list:
        """Per share product: the (points, factors*combos) matrix summing it into slot pairs."""
        pair = {ab: k for k, ab in enumerate(zip(*_UPPER))}
        one = np.ones_like(log_n)
        # slots: 0 alpha, 1 beta, 2 E, 3 A, 4 B; shares: 0 E, 1 A, 2 B (dJ/d alpha = -log N dJ/dA, ...)
        hessian = {(1, 1): [((3, 3), one), ((0, 3), -log_n), ((0, 0), log_n ** 2)],
                   (2, 2): [((4, 4), one), ((1, 4), -log_d), ((1, 1), log_d ** 2)],
                   (1, 2): [((3, 4), one), ((0, 4), -log_n), ((1, 3), -log_d), ((0, 1), log_n * log_d)],
                   (0, 0): [((2, 2), one)],
                   (0, 1): [((2, 3), one), ((0, 2), -log_n)],
                   (0, 2): [((2, 4), one), ((1, 2), -log_d)]}
        gradient = {0: [(2, one)], 1: [(3, one), (0, -log_n)], 2: [(4, one), (1, -log_d)]}
        maps = []
        for key, entries in list(hessian.items()) + list(gradient.items()):
            matrix = np.concatenate([factor[:, None] * self.sum_by_combo for _, factor in entries], axis=1)
            targets = [pair[t] if isinstance(t, tuple) else t for t, _ in entries]
            maps.append((key, matrix, targets))
        return maps

    @staticmethod
    def _split_slots(combos: np.ndarray, n_a: int, n_b: int) -> tuple[list[int], list[int]]:
        global_slots, local_slots = [0, 1, 2], []
        for slot, column, count in ((3, 0, n_a), (4, 1, n_b)):
            used = combos[:, column]
            if count == 1:
                global_slots.append(slot)
            elif len(np.unique(used)) == len(used):
                local_slots.append(slot)
            else:
                return [], []       # some A/B shared by a few combos only: dense
        return global_slots, local_slots

    def _dense_maps(self) -> None:
        P, C = self.P, self.C
        rows, cols = [], []
        for k, (a, b) in enumerate(zip(*_UPPER)):
            for c in range(C):
                i, j = self.slot_param[c, a], self.slot_param[c, b]
                rows.append(i * P + j), cols.append(k * C + c)
                if i != j:
                    rows.append(j * P + i), cols.append(k * C + c)
        self.scatter_H = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(P * P, 15 * C))
        self.scatter_g = sparse.csr_matrix((np.ones(5 * C), (self.slot_param.T.ravel(), np.arange(5 * C))),
                                           shape=(P, 5 * C))

    def combo_sums(self, J5: np.ndarray, u: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J5 (5, R, n) slot derivatives, u (R, n) weights, r (R, n) residuals ->
        per-combo sums of u J_a J_b (15, R, C) and of u J_a r (5, R, C)."""
        R, n = u.shape
        U5 = J5 * u
        # Products land in one reused buffer: allocating 15 x R x n fresh each step cost
        # more than the arithmetic (page faults), measured ~6x slower at R = 1000.
        size = 15 * R * n
        if self._buffer is None or self._buffer.size < size:
            self._buffer = np.empty(size)
        products = self._buffer[:size].reshape(15, R, n)
        for k, (a, b) in enumerate(zip(*_UPPER)):
            np.multiply(U5[a], J5[b], out=products[k])
        U5 *= r
        if self.combo_starts is not None:
            return np.add.reduceat(products, self.combo_starts, axis=2), np.add.reduceat(U5, self.combo_starts, axis=2)
        sums = (products.reshape(15 * R, n) @ self.sum_by_combo).reshape(15, R, self.C)
        grads = (U5.reshape(5 * R, n) @ self.sum_by_combo).reshape(5, R, self.C)
        return sums, grads

    def share_sums(self, S: np.ndarray, u: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``combo_sums`` from the shares S (3, R, n) = dr/dlog(E, A, B): J5 is
        (-log N S_A, -log D S_B, S_E, S_A, S_B). Needs log_n and log_d at construction."""
        R, C = u.shape[0], self.C
        sums, grads = np.empty((15, R, C)), np.empty((5, R, C))
        uS = [u * S[0], u * S[1], u * S[2]]
        ur = u * r
        for key, matrix, targets in self._factor_maps:
            if isinstance(key, tuple):
                q, out = uS[key[0]] * S[key[1]], sums
            else:
                q, out = ur * S[key], grads
            block = (q @ matrix).reshape(R, len(targets), C)
            for j, t in enumerate(targets):
                out[t] = block[:, j]
        return sums, grads

    def assemble(self, J5: np.ndarray, u: np.ndarray, r: np.ndarray, free: np.ndarray) -> "System":
        return self.system_from_sums(*self.combo_sums(J5, u, r), free)

    def system_from_sums(self, sums: np.ndarray, grads: np.ndarray, free: np.ndarray) -> "System":
        """The system of ``combo_sums``/``share_sums`` output (15, R, C), (5, R, C) and free (R, P)."""
        if self.block:
            return BlockSystem(self, sums, grads, free)
        return DenseSystem(self, sums, grads, free)


class DenseSystem:
    def __init__(self, eq: NormalEquations, sums: np.ndarray, grads: np.ndarray, free: np.ndarray):
        R, P, C = sums.shape[1], eq.P, eq.C
        H = (eq.scatter_H @ sums.transpose(0, 2, 1).reshape(15 * C, R)).T.reshape(R, P, P)
        g = (eq.scatter_g @ grads.transpose(0, 2, 1).reshape(5 * C, R)).T
        pair_free = free[:, :, None] & free[:, None, :]
        self.H = np.where(pair_free, H, 0.0)
        self.g = np.where(free, g, 0.0)
        self.diag = np.einsum("rpp->rp", self.H)
        self.free = free & (self.diag > 0)
        self.eye = np.eye(P)

    def step(self, rows: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Solve (H + mu diag(H)) x = -g for the given rows."""
        free = self.free[rows]
        d = np.where(free, (mu[:, None] + LEVENBERG_FLOOR) * self.diag[rows], 1.0)
        Hd = self.H[rows] + d[:, :, None] * self.eye
        g = self.g[rows]
        try:
            x = -np.linalg.solve(Hd, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            x = -np.stack([np.linalg.lstsq(h, gg, rcond=None)[0] for h, gg in zip(Hd, g)])
        x[~free] = 0.0
        return x


class BlockSystem:
    """Arrowhead system: global block G (R, g, g), per-combo couplings and l x l combo blocks (l = 1 or 2).

    Laid out for few, large numpy calls (measured: at the bootstrap's tail of ~10 running rows a
    step is mostly per-call overhead, and batched matmuls of 11,000 tiny 3x2 matrices cost more
    than their arithmetic): the couplings K as Y (R, C*l, g + 1) with the combos' gradient as its
    last column, so the Schur complement and its right-hand side are one (g x C*l) @ (C*l x g+1)
    product per row, and the combo blocks as their entries (R, C), inverted in closed form.
    """

    def __init__(self, eq: NormalEquations, sums: np.ndarray, grads: np.ndarray, free: np.ndarray):
        R, C = sums.shape[1], eq.C
        gs, ls = eq.global_slots, eq.local_slots
        g, l = len(gs), len(ls)
        pair_gg, pair_lg, pair_ll = eq.block_pairs
        self.gparam = eq.slot_param[0, gs]                         # (g,)
        self.lparam = eq.slot_param[:, ls]                         # (C, l)
        fg, fl = free[:, self.gparam], free[:, self.lparam]        # (R, g), (R, C, l)
        # Masks multiply only when some coordinate is held: times 1.0 changes no bit, and the
        # usual case (all free) then skips a third of this constructor's time.
        all_g, all_l = fg.all(), fl.all()
        G = sums[pair_gg].sum(axis=-1).transpose(2, 0, 1)          # (R, g, g)
        if not all_g:
            G *= fg[:, :, None] & fg[:, None, :]
        Y = np.empty((R, C, l, g + 1))
        Y[..., :g] = sums[pair_lg].transpose(2, 3, 0, 1)           # (R, C, l, g)
        Y[..., g] = grads[ls].transpose(1, 2, 0)                   # (R, C, l)
        if not all_g:
            Y[..., :g] *= fg[:, None, None, :]
        # combo blocks [[a, b], [b, d]] (l = 2) or [a] (l = 1), rows/columns of held coordinates zeroed
        D = sums[pair_ll] * fl.transpose(2, 0, 1)                  # (l, R, C): the diagonals a (and d)
        self.dG = np.einsum("rgg->rg", G).copy()
        self.fg = fg & (self.dG > 0)                               # no data on a coordinate: hold it
        self.fl = fl & (D > 0).transpose(1, 2, 0)
        if not all_l:
            Y *= fl[..., None]                                     # held combo coordinate: no coupling
        Y[..., g] *= self.fl                                       # ... and no gradient where no data either
        self.a = D[0]
        if l == 2:
            self.d = D[1]
            self.b = sums[_PAIR[ls[0], ls[1]]] * (fl[..., 0] & fl[..., 1])
        self.G, self.Y = G, Y
        self.gg = np.where(self.fg, grads[gs].sum(axis=2).T, 0.0)  # (R, g)
        self.R, self.g, self.l, self.C, self.P = R, g, l, C, eq.P

    def step(self, rows: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Solve (H + mu diag(H)) x = -g for the given rows by eliminating the combo blocks."""
        g, l, C = self.g, self.l, self.C
        if len(rows) == self.R and np.array_equal(rows, np.arange(self.R)):
            rows = slice(None)          # the first try of a step takes every row: views, not copies
        fg, fl = self.fg[rows], self.fl[rows]
        damp = (mu + LEVENBERG_FLOOR)[:, None]
        G = self.G[rows] + np.where(fg, damp * self.dG[rows], 1.0)[:, :, None] * np.eye(g)
        Y = self.Y[rows]
        n = len(G)
        # D^-1 in closed form; a held coordinate has a zero row/column and a unit diagonal
        a = self.a[rows] + np.where(fl[..., 0], damp * self.a[rows], 1.0)
        if l == 1:
            inv_a = 1.0 / a
            X = Y[..., 0, :g] * inv_a[..., None]                   # (n, C, g) = (K D^-1) per combo
            Xf = X.reshape(n, C, g)
        else:
            d = self.d[rows] + np.where(fl[..., 1], damp * self.d[rows], 1.0)
            b = self.b[rows]
            inv_det = 1.0 / (a * d - b * b)
            p, q, s = (d * inv_det)[..., None], (-b * inv_det)[..., None], (a * inv_det)[..., None]
            Y0, Y1 = Y[:, :, 0, :g], Y[:, :, 1, :g]
            X = np.empty((n, C, 2, g))
            np.multiply(Y0, p, out=X[:, :, 0])
            X[:, :, 0] += Y1 * q
            np.multiply(Y0, q, out=X[:, :, 1])
            X[:, :, 1] += Y1 * s
            Xf = X.reshape(n, C * 2, g)
        M = Xf.swapaxes(1, 2) @ Y.reshape(n, C * l, g + 1)         # (n, g, g + 1): K D^-1 [K' | g_l]
        S = G - M[..., :g]
        rhs = -self.gg[rows] + M[..., g]
        try:
            xg = np.linalg.solve(S, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            xg = np.stack([np.linalg.lstsq(m, v, rcond=None)[0] for m, v in zip(S, rhs)])
        xg = np.where(fg, xg, 0.0)
        # combo coordinates: x_l = D^-1 (-g_l - K' x_g)
        v = -(Y.reshape(n, C * l, g + 1) @ np.concatenate([xg, np.ones((n, 1))], axis=1)[:, :, None])[..., 0]
        if l == 1:
            xl = (v * inv_a)[..., None]
        else:
            v = v.reshape(n, C, 2)
            xl = np.empty((n, C, 2))
            xl[..., 0] = p[..., 0] * v[..., 0] + q[..., 0] * v[..., 1]
            xl[..., 1] = q[..., 0] * v[..., 0] + s[..., 0] * v[..., 1]
        x = np.zeros((n, self.P))
        x[:, self.gparam] = xg
        x[:, self.lparam.ravel()] = np.where(fl, xl, 0.0).reshape(n, -1)
        return x


System = DenseSystem | BlockSystem
