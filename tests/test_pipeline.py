"""The pure chain: releasing the raw sheets early changes nothing but memory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reconcile import ingest
from reconcile.config import Settings
from reconcile.pipeline import normalize_all, reconcile, stored_tables
from countygen import SynthConfig, generate_county
from conftest import ingested, sheet


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("county")
    generate_county(out, SynthConfig(households=80, seed=4))
    return out / "inbox"


def test_release_input_gives_the_same_results(inbox: Path, settings: Settings) -> None:
    kept = ingest.read_inbox(inbox, settings.header_aliases)
    released = ingest.read_inbox(inbox, settings.header_aliases)
    as_of = dt.date(2025, 9, 1)
    a = reconcile(kept, settings, as_of=as_of)
    b = reconcile(released, settings, as_of=as_of, release_input=True)
    assert kept.tables and not released.tables  # the raw sheets were let go
    assert a.counts == b.counts
    for name, frame in stored_tables(a).items():
        other = stored_tables(b)[name]
        if isinstance(frame, list):
            assert len(frame) == len(other) and all(x.equals(y) for x, y in zip(frame, other)), name
        else:
            assert frame is not None and other is not None and frame.equals(other), name


def test_one_name_per_place_for_the_whole_night(settings: Settings) -> None:
    roster = sheet("roster", [{"name": "王丽", "town": "茶峒镇", "village": "坝北"}] * 2)
    dibao = sheet("dibao", [{"name": "王丽", "head_name": "王建国", "town": "茶洞镇", "village": "坝北村"}])
    filing = sheet("filing", [{"name": "王丽", "town": "茶峒 镇", "village": "坝北村委会"}])
    records, _ = normalize_all(ingested(roster, dibao, filing), settings)
    assert {n for f in records.values() for n in f["town_name"]} == {"茶峒镇"}  # 3 of 4 rows
    # the full spellings (with a suffix) before the commoner short one; then the longer
    assert {n for f in records.values() for n in f["village_name"]} == {"坝北村委会"}
