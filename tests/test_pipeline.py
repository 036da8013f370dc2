"""The pure chain: releasing the raw sheets early, or matching one system in a second
process, changes nothing but memory and time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

import operator
import pickle

from reconcile import ingest, second_process
from reconcile.config import Settings
from reconcile.pipeline import link_systems, normalize_all, reconcile, stored_tables
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


def test_a_system_matched_in_a_second_process_gives_the_same_links(inbox: Path, settings: Settings) -> None:
    records, _ = normalize_all(ingest.read_inbox(inbox, settings.header_aliases), settings)
    said: list[str] = []
    here = link_systems(records, settings)
    there = link_systems(records, settings, said.append, aside=second_process.start)
    assert here.matches.equals(there.matches)
    assert here.model_parameters.equals(there.model_parameters)
    assert here.blocking == there.blocking
    # the second process's progress comes back, in its order, after its own heading
    away = [i for i, line in enumerate(said) if "second process" in line]
    assert len(away) == 1 and any(line.startswith("blocking filing") for line in said[away[0]:])


def test_a_failure_in_the_second_process_is_raised_here(inbox: Path, settings: Settings) -> None:
    records, _ = normalize_all(ingest.read_inbox(inbox, settings.header_aliases), settings)
    broken = {**records, "filing": records["filing"].with_columns(rec=pl.lit("x"))}  # rec must be an integer

    with pytest.raises(Exception) as caught:
        link_systems(broken, settings, aside=second_process.start)
    assert not isinstance(caught.value, ChildProcessError)


def test_match_settings_cross_a_process_by_value(settings: Settings) -> None:
    again = pickle.loads(pickle.dumps(settings.match))
    assert again == settings.match
    assert again.levels["id"]["exact"].when is settings.match.levels["id"]["exact"].when
    assert second_process.start(operator.attrgetter("match"), settings).result() == settings.match


def test_one_name_per_place_for_the_whole_night(settings: Settings) -> None:
    roster = sheet("roster", [{"name": "王丽", "town": "茶峒镇", "village": "坝北"}] * 2)
    dibao = sheet("dibao", [{"name": "王丽", "head_name": "王建国", "town": "茶洞镇", "village": "坝北村"}])
    filing = sheet("filing", [{"name": "王丽", "town": "茶峒 镇", "village": "坝北村委会"}])
    records, _ = normalize_all(ingested(roster, dibao, filing), settings)
    assert {n for f in records.values() for n in f["town_name"]} == {"茶峒镇"}  # 3 of 4 rows
    # the full spellings (with a suffix) before the commoner short one; then the longer
    assert {n for f in records.values() for n in f["village_name"]} == {"坝北村委会"}
