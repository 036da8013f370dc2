"""The generator's own standards table: the amounts it gives, and the policy file written from it."""

from __future__ import annotations

import tomllib

import pytest

from countygen.policy import BASES, STANDARDS, policy_toml, yearly_amount

REG, DIBAO, NONE = frozenset({"建档立卡"}), frozenset({"低保"}), frozenset()


@pytest.mark.parametrize(
    ("stage", "year", "boarding", "cats", "amount"),
    [
        ("学前", 2, False, NONE, 1000),
        ("小学", 3, True, NONE, 1500),      # upper standard 1000 + 500
        ("小学", 3, False, REG, 800),
        ("小学", 3, False, NONE, 0),        # day pupils only from registered households
        ("初中", 1, True, DIBAO, 1750),     # 1250 + 500
        ("初中", 1, False, DIBAO, 1000),
        ("高中", 2, True, REG, 2000),
        ("高中", 2, False, DIBAO, 1500),
        ("中职", 1, False, REG, 2500),      # grant 1500 + registered 1000 (+ tuition waived)
        ("中职", 3, False, REG, 1000),
        ("中职", 3, False, DIBAO, 0),
        ("本科", 1, False, NONE, 6000),     # once, on entry
        ("大专", 2, False, REG, 2000),
    ],
)
def test_yearly_amount(stage: str, year: int, boarding: bool, cats: frozenset[str], amount: int) -> None:
    assert yearly_amount(stage, year, boarding, cats) == amount


def test_policy_file_says_what_the_table_says() -> None:
    raw = tomllib.loads(policy_toml("某县", "433199", 2026))
    assert (raw["county"], raw["regions"], raw["school_year"]) == ("某县", ["433199"], 2026)
    assert raw["bases"] == BASES
    assert [s["id"] for s in raw["standard"]] == [s.id for s in STANDARDS]
    for s, t in zip(STANDARDS, raw["standard"], strict=True):
        assert t["stage"] == list(s.stages)
        assert t.get("component", "grant") == s.component
        assert t.get("boarding") == s.boarding
        assert t.get("category") == (list(s.categories) if s.categories else None)
        assert t.get("year") == (list(s.years) if s.years else None)
        assert t.get("per", "year") == s.per and t.get("waiver", False) == s.waiver
        amount = t.get("amount", 0)
        cash = BASES[amount["base"]] + amount["plus"] if isinstance(amount, dict) else amount
        assert cash == (0 if s.waiver else s.yearly)
