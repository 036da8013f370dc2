"""The model: EM recovers the m, u and share of links that simulated comparison vectors were
drawn with; the parameters come back as the stored table's rows."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from reconcile.comparisons import COMPARISONS
from reconcile.config import MatchSettings, Settings
from reconcile.model import PARAMETER_COLUMNS, Session, configured_model, fit_model, parameters_frame

FIELDS = list(COMPARISONS)


def _truth(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per field: m puts most mass on the first (agreeing) levels, u on the last."""
    m, u = {}, {}
    for f, c in COMPARISONS.items():
        k = len(c.names)
        m[f] = rng.dirichlet([12.0] + [1.0] * (k - 1))
        u[f] = rng.dirichlet([1.0] * (k - 1) + [12.0])
    return m, u


def _vectors(rng: np.random.Generator, n_links: int, n_other: int, m: dict, u: dict) -> pl.DataFrame:
    """Comparison vectors of n_links links (levels drawn from m) and n_other non-links (from u)."""
    cols = {}
    for f, c in COMPARISONS.items():
        names = np.array(c.names)
        cols[f"lv_{f}"] = np.concatenate([
            names[rng.choice(len(names), n_links, p=m[f])], names[rng.choice(len(names), n_other, p=u[f])]])
    return pl.DataFrame(cols).group_by(list(cols)).len().with_columns(pl.col("len").cast(pl.Int64))


def _flat(ms: MatchSettings) -> MatchSettings:
    """The configured m/u replaced by flat values: what EM starts from is not the answer."""
    levels = {f: MappingProxyType({n: lv.with_mu(1 / len(c), 1 / len(c)) for n, lv in c.items()})
              for f, c in ms.levels.items()}
    return dataclasses.replace(ms, levels=MappingProxyType(levels))


def _first(f: str) -> pl.Expr:
    return pl.col(f"lv_{f}") == COMPARISONS[f].names[0]


# Blocking as in a run: a pair is a candidate when it agrees on one of these fields, and the
# session of each rule holds that field fixed.
BLOCKED = ("id", "name", "birth")
SESSIONS = [Session(f, (f,), _first(f)) for f in BLOCKED]


@hsettings(max_examples=5, deadline=None)  # each example fits 700k simulated pairs
@given(st.integers(0, 2**32 - 1), st.integers(2_000, 12_000))
def test_em_recovers_m_u_and_the_share_of_links(settings: Settings, seed: int, n_links: int) -> None:
    rng = np.random.default_rng(seed)
    m, u = _truth(rng)
    n_other = 400_000
    links = _vectors(rng, n_links, 0, m, u)
    others = _vectors(rng, 0, n_other, m, u)
    block = pl.any_horizontal([_first(f) for f in BLOCKED])
    candidates = pl.concat([links, others]).filter(block).group_by([f"lv_{f}" for f in FIELDS]).agg(pl.col("len").sum())
    found = links.filter(block)["len"].sum()
    # the random sample: roster x system pairs, links among them at the population's rate
    all_pairs = float(n_links + n_other)
    sample_n = 300_000
    sample_links = int(rng.binomial(sample_n, n_links / all_pairs))
    sample = _vectors(rng, sample_links, sample_n - sample_links, m, u)
    counts = {f: np.array([sample.filter(pl.col(f"lv_{f}") == name)["len"].sum() for name in c.names], dtype=float)
              for f, c in COMPARISONS.items()}
    model = fit_model(candidates, counts, sample_n, all_pairs, SESSIONS, _flat(settings.match))

    assert model.fitted and model.converged
    # the prior: the links blocking can see, among all pairs
    assert model.prior == pytest.approx(found / all_pairs, rel=0.05)
    for f, c in COMPARISONS.items():
        for j, name in enumerate(c.names):
            if n_links * m[f][j] >= 200:
                assert model.m_from[f][j] == "data"
                assert model.m[f][j] == pytest.approx(m[f][j], abs=0.02 + 0.1 * m[f][j]), (f, name)
            if sample_n * u[f][j] >= 500:
                assert model.u_from[f][j] == "data"
                assert model.u[f][j] == pytest.approx(u[f][j], rel=0.15, abs=0.002), (f, name)


def test_sessions_hold_their_blocked_fields_fixed(settings: Settings) -> None:
    """A session blocked on a field leaves that field's m to the other sessions."""
    rng = np.random.default_rng(7)
    m, u = _truth(rng)
    candidates = _vectors(rng, 4000, 6000, m, u)
    counts = {f: 1e5 * u[f] for f in FIELDS}
    only_id = [Session("id", ("id",), pl.col("lv_id") == COMPARISONS["id"].names[0])]
    model = fit_model(candidates, counts, 100_000, 1e6, only_id, _flat(settings.match))
    assert set(model.m_from["id"]) == {"configuration"}
    assert np.allclose(model.m["id"], 1 / len(COMPARISONS["id"].names))
    assert "data" in model.m_from["name"]


def test_tiny_input_keeps_the_configuration(settings: Settings) -> None:
    rng = np.random.default_rng(1)
    m, u = _truth(rng)
    model = fit_model(_vectors(rng, 10, 30, m, u), {}, 0, 1e4, [Session("all", (), pl.lit(True))], settings.match)
    assert not model.fitted and model.prior_bits == settings.match.prior_bits
    assert model.bits("id", "exact") == pytest.approx(settings.match.bits("id", "exact"))


def test_parameters_frame_has_every_level_once(settings: Settings) -> None:
    table = parameters_frame(configured_model(settings.match), "filing")
    assert dict(table.schema) == PARAMETER_COLUMNS
    assert table.height == sum(len(c.names) for c in COMPARISONS.values())
    assert table.select("field", "level").is_unique().all()
    assert set(table["m_from"]) == set(table["u_from"]) == {"configuration"}
    row = table.filter((pl.col("field") == "name") & (pl.col("level") == "pinyin")).row(0, named=True)
    assert row["label"] == COMPARISONS["name"].level("pinyin").label
    assert row["bits"] == pytest.approx(np.log2(row["m"] / row["u"]))
