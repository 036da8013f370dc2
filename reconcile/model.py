"""Fellegi–Sunter parameters estimated from the data, as Splink estimates them.

Works on comparison vectors — one row per distinct combination of levels (`lv_<field>`)
with its count `len` — so the numerics are small however many pairs a county has:

* u (level | different persons) from random roster x system pairs: a level seen at least
  `u_min_seen` times there (less the true links such a sample holds: prior x m) takes its
  share; a rarer level keeps its configured u, capped at what the sample allows;
* m (level | same person) by expectation maximisation in sessions, one per blocking rule,
  over the candidate pairs that rule finds, the fields it blocks on held fixed (they say
  nothing within the session) and u fixed; each field's m is the mean over the sessions
  that estimated it; a level with fewer than `M_MIN_LINKS` expected links keeps its
  configured m, capped at what the sessions allow ((expected + 3) / links);
* the prior (share of links among all roster x system pairs): the expected number of links
  among the candidate pairs under the fitted m and u, over |R| x |S|.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .comparisons import COMPARISONS
from .config import MatchSettings

__all__ = [
    "Model", "Session", "SessionFit", "configured_model", "encode", "level_counts", "u_from_sample", "em_session",
    "fit_prior", "fit_model", "parameters_frame", "PARAMETER_COLUMNS", "M_MIN_LINKS",
]

FIELDS = tuple(COMPARISONS)
LEVEL_COLS = [f"lv_{f}" for f in FIELDS]
# A level's m is the data's when the EM sessions expect at least this many links in it.
M_MIN_LINKS = 5.0
# At most this many rounds of u -> m -> prior (each takes the sample's links out of u anew).
ROUNDS = 6
Progress = Callable[[str], None]
Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Session:
    """One EM session: the candidate pairs a blocking rule finds (a condition on the levels)
    and the fields that rule blocks on, held fixed."""

    name: str
    fixed: tuple[str, ...]
    where: pl.Expr


@dataclass(frozen=True)
class SessionFit:
    name: str
    pairs: int
    iterations: int
    converged: bool
    links: float


@dataclass(frozen=True)
class Model:
    """m and u per field and level (arrays in the levels' declared order), where each came
    from, and the prior. `fitted` False: the configured values, as they are."""

    m: Mapping[str, np.ndarray]
    u: Mapping[str, np.ndarray]
    m_from: Mapping[str, tuple[str, ...]]
    u_from: Mapping[str, tuple[str, ...]]
    u_seen: Mapping[str, np.ndarray]
    prior_bits: float
    fitted: bool
    random_pairs: int = 0
    sessions: tuple[SessionFit, ...] = field(default=())

    def bits(self, f: str, level: str) -> float:
        j = COMPARISONS[f].names.index(level)
        # Rounded so that the same inputs give the same weights to the last digit.
        return round(math.log2(float(self.m[f][j]) / float(self.u[f][j])), 9)

    @property
    def prior(self) -> float:
        return 1.0 / (1.0 + 2.0 ** (-self.prior_bits))

    @property
    def em_iterations(self) -> int:
        return sum(s.iterations for s in self.sessions)

    @property
    def converged(self) -> bool:
        return all(s.converged for s in self.sessions)


def _configured(ms: MatchSettings) -> tuple[Params, Params]:
    m = {f: np.array([ms.levels[f][n].m for n in c.names]) for f, c in COMPARISONS.items()}
    u = {f: np.array([ms.levels[f][n].u for n in c.names]) for f, c in COMPARISONS.items()}
    return m, u


def configured_model(ms: MatchSettings) -> Model:
    m, u = _configured(ms)
    conf = {f: ("configuration",) * len(c.names) for f, c in COMPARISONS.items()}
    zeros = {f: np.zeros(len(c.names), dtype=np.int64) for f, c in COMPARISONS.items()}
    return Model(m, u, conf, conf, zeros, ms.prior_bits, False)


def encode(vec: pl.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Counts and, per field, each vector's level index (-1: null, no evidence)."""
    vec = vec.with_columns(pl.col(c).cast(pl.String) for c in LEVEL_COLS).sort(LEVEL_COLS, nulls_last=True)
    idx = {}
    for f, c in COMPARISONS.items():
        code = {n: i for i, n in enumerate(c.names)}
        idx[f] = vec[f"lv_{f}"].replace_strict(code, default=-1, return_dtype=pl.Int32).fill_null(-1).to_numpy()
    return vec["len"].to_numpy().astype(float), idx


def level_counts(cnt: np.ndarray, idx: dict[str, np.ndarray], weights: np.ndarray | None = None) -> Params:
    """Per field, the (weighted) number of pairs in each level."""
    w = cnt if weights is None else cnt * weights
    out = {}
    for f, c in COMPARISONS.items():
        ok = idx[f] >= 0
        out[f] = np.bincount(idx[f][ok], weights=w[ok], minlength=len(c.names))
    return out


def _sources(enough: np.ndarray, kept: np.ndarray, configured: np.ndarray) -> tuple[str, ...]:
    """`data`; or `configuration` (too rare: the configured value kept); or `bound` (too
    rare, and the configured value more than the data allows: capped at that)."""
    return tuple("data" if e else ("configuration" if k == c else "bound") for e, k, c in zip(enough, kept, configured))


def _blend(estimate: np.ndarray, seen: np.ndarray, min_seen: float, total: float,
           configured: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """The data's estimate for the levels seen at least `min_seen` times; the configured
    value for the others, capped at what the data allows ((seen + 3) / total); the data's
    levels share what the kept ones leave. Returns the probabilities and their sources."""
    enough = seen >= min_seen
    kept = np.minimum(configured, (seen + 3.0) / total)
    out = np.where(enough, estimate, kept)
    rest = 1.0 - out[~enough].sum()
    if enough.any() and rest > 0:
        out[enough] = estimate[enough] / estimate[enough].sum() * rest
    return np.clip(out, 1e-12, 1.0), _sources(enough, kept, configured)


def u_from_sample(counts: Params, prior: float, m: Params, u0: Params, min_seen: int) -> tuple[Params, dict[str, tuple[str, ...]], Params]:
    """u from the level counts of random pairs. The true links the sample holds (prior x m of
    each field's compared pairs) are taken out first. A level seen fewer than `min_seen`
    times keeps its configured u, capped at the sample's upper bound (seen + 3) / pairs:
    `configuration` or `bound`. Returns u, its sources and the (clean) counts."""
    u, src, seen = {}, {}, {}
    for f in FIELDS:
        raw = counts[f]
        tot = raw.sum()
        clean = np.maximum(raw - tot * prior * m[f], 0.0)
        seen[f] = clean
        if not tot:
            u[f], src[f] = u0[f].copy(), ("configuration",) * len(raw)
            continue
        u[f], src[f] = _blend(clean / max(clean.sum(), 1e-300), clean, min_seen, tot, u0[f])
    return u, src, seen


def em_session(cnt: np.ndarray, idx: dict[str, np.ndarray], active: Sequence[str], m0: Params, u: Params,
               prior_pairs: float, max_iter: int, tol: float) -> tuple[Params, float, int, bool, Params]:
    """EM over the vectors of one session, u fixed, the fields not in `active` ignored.
    m starts at `m0`, which also counts as `prior_pairs` pairs of evidence (keeps an unseen
    level off zero). Returns m (active fields), the share of links, iterations, converged,
    and the expected links per level."""
    m = {f: m0[f].copy() for f in active}
    pm0 = {f: m0[f] / m0[f].sum() for f in active}
    lam, total = 0.5, cnt.sum()
    lu = {f: np.log(u[f]) for f in active}
    expected: Params = {f: np.zeros_like(m[f]) for f in active}
    for it in range(1, max_iter + 1):
        logit = np.full(len(cnt), math.log(lam / (1 - lam)))
        for f in active:
            i = idx[f]
            ok = i >= 0
            logit[ok] += np.log(m[f][i[ok]]) - lu[f][i[ok]]
        w = 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))
        wm = cnt * w
        new_lam = float(min(max(wm.sum() / total, 1e-9), 1 - 1e-9))
        delta = abs(new_lam - lam)
        for f in active:
            i = idx[f]
            ok = i >= 0
            sm = np.bincount(i[ok], weights=wm[ok], minlength=len(m[f]))
            expected[f] = sm
            new = (sm + prior_pairs * pm0[f]) / (sm.sum() + prior_pairs)
            new = np.clip(new, 1e-12, 1.0)
            delta = max(delta, float(np.abs(new - m[f]).max()))
            m[f] = new
        lam = new_lam
        if delta < tol:
            return m, lam, it, True, expected
    return m, lam, max_iter, False, expected


def fit_prior(cnt: np.ndarray, idx: dict[str, np.ndarray], m: Params, u: Params, all_pairs: float,
              start: float, max_iter: int, tol: float) -> float:
    """The share of links among all roster x system pairs: EM on that share alone (m, u
    fixed) over every candidate vector; the pairs not blocked count as non-links."""
    odds = np.zeros(len(cnt))
    for f in FIELDS:
        i = idx[f]
        ok = i >= 0
        odds[ok] += np.log(m[f][i[ok]]) - np.log(u[f][i[ok]])
    p = min(max(start, 1e-12), 0.5)
    for _ in range(max_iter):
        w = 1.0 / (1.0 + np.exp(-np.clip(odds + math.log(p / (1 - p)), -700, 700)))
        new = float(min(max((cnt * w).sum() / all_pairs, 1e-12), 0.5))
        if abs(new - p) < tol * p:
            return new
        p = new
    return p


def fit_model(candidates: pl.DataFrame, sample_counts: Params, sample_pairs: int, all_pairs: float,
              sessions: Sequence[Session], ms: MatchSettings, progress: Progress | None = None,
              label: str = "") -> Model:
    """The whole estimate from the candidate vectors and the random sample's level counts
    (see the module docstring): rounds of u -> EM sessions -> prior until the prior
    settles, deterministic."""
    m0, u0 = _configured(ms)
    cnt, idx = encode(candidates)
    if not ms.em or cnt.sum() < ms.em_min_pairs:
        return configured_model(ms)
    # Round 0 takes u from the sample as it is (prior 0: no links taken out); each round then
    # fits m and the prior, and the next takes the links the sample holds out of u, until the
    # prior settles.
    prior = 0.0
    m = {f: v.copy() for f, v in m0.items()}
    fits: list[SessionFit] = []
    m_src: dict[str, tuple[str, ...]] = {}
    for round_ in range(ROUNDS):
        last = prior
        u, u_src, seen = u_from_sample(sample_counts, prior, m, u0, ms.u_min_seen)
        estimates: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
        expected: Params = {f: np.zeros(len(COMPARISONS[f].names)) for f in FIELDS}
        fits = []
        for sess in sessions:
            mask = candidates.select(sess.where.fill_null(False)).to_series()
            sub = candidates.filter(mask)
            if sub["len"].sum() < ms.em_session_min_pairs:
                continue
            scnt, sidx = encode(sub)
            active = [f for f in FIELDS if f not in sess.fixed]
            sm, lam, its, conv, exp_links = em_session(scnt, sidx, active, m, u, ms.em_prior_pairs,
                                                       ms.em_iterations, ms.em_tolerance)
            for f in active:
                estimates[f].append(sm[f])
                expected[f] += exp_links[f]
            fits.append(SessionFit(sess.name, int(scnt.sum()), its, conv, float(lam * scnt.sum())))

        new_m, m_src = {}, {}
        for f in FIELDS:
            if not estimates[f]:
                new_m[f], m_src[f] = m0[f].copy(), ("configuration",) * len(m0[f])
                continue
            new_m[f], m_src[f] = _blend(np.mean(estimates[f], axis=0), expected[f], M_MIN_LINKS,
                                        max(expected[f].sum(), 1.0), m0[f])
        m = new_m
        prior = fit_prior(cnt, idx, m, u, all_pairs, last or 1e-4, ms.em_iterations, ms.em_tolerance)
        if round_ and abs(prior - last) <= 1e-3 * prior:
            break
    if progress:
        for fit in fits:
            progress(f"model {label}: EM session {fit.name}: {fit.pairs} pairs, {fit.iterations} iterations, "
                     f"{'converged' if fit.converged else 'not converged'}")
        progress(f"model {label}: u from {sample_pairs} random pairs; {round_ + 1} rounds; prior {prior:.3g}")
    seen_int = {f: np.rint(v).astype(np.int64) for f, v in seen.items()}
    return Model(m, u, m_src, u_src, seen_int, round(math.log2(prior / (1 - prior)), 9), True, sample_pairs, tuple(fits))


# The stored table `model_parameters` (one row per system, field and level).
PARAMETER_COLUMNS: dict[str, pl.DataType] = {
    "system": pl.String, "field": pl.String, "level": pl.String, "label": pl.String,
    "m": pl.Float64, "u": pl.Float64, "bits": pl.Float64, "m_from": pl.String, "u_from": pl.String,
    "u_seen": pl.Int64, "random_pairs": pl.Int64, "prior": pl.Float64, "prior_bits": pl.Float64,
    "em_iterations": pl.Int64, "converged": pl.Boolean, "fitted": pl.Boolean,
}


def parameters_frame(model: Model, system: str) -> pl.DataFrame:
    """The model as rows: per field and level its m, u, weight (bits) and where each came from."""
    rows = []
    for f, c in COMPARISONS.items():
        for j, n in enumerate(c.names):
            rows.append({
                "system": system, "field": f, "level": n, "label": c.level(n).label,
                "m": float(model.m[f][j]), "u": float(model.u[f][j]), "bits": model.bits(f, n),
                "m_from": model.m_from[f][j], "u_from": model.u_from[f][j], "u_seen": int(model.u_seen[f][j]),
                "random_pairs": model.random_pairs, "prior": model.prior, "prior_bits": model.prior_bits,
                "em_iterations": model.em_iterations, "converged": model.converged, "fitted": model.fitted,
            })
    return pl.DataFrame(rows, schema=PARAMETER_COLUMNS)
