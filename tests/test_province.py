"""End to end: a small generated province through the real Prefect flow, on a local Dask
cluster of 2 workers (started once) and on one worker, with students schooled across
county lines; each county alone as `recon run` reconciles it; a clerk's corrected ID
imported into the province database and applied the next night."""

from __future__ import annotations

import os
from pathlib import Path

import datetime as dt
import json

import duckdb
import openpyxl
import polars as pl
import pytest

from countygen.province import ProvinceConfig, generate_province
from reconcile import crosscounty, ingest, pipeline, report
from reconcile.config import load_settings
from reconcile.review_import import import_workbooks

AS_OF = "2025-09-01"
# Differ between two runs of the same data by design.
VOLATILE = {"run_id", "row_hash"}
# Every table a run publishes.
TABLES = ("records", "row_problems", "matches", "discrepancies", "export_problems", "household_changes",
          "model_parameters", "item_refs")
# A county whose share is not there: named to sort last, so the others' item numbers
# (counted from each county's place in the run) are those of the run without it.
UNMOUNTED = "龙山县"


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("province")
    generate_province(out, ProvinceConfig(counties=3, households=60, seed=4, away_share=0.6))
    return out


@pytest.fixture(scope="module")
def scheduler(harness):
    """Two worker processes reporting to the harness's Prefect server (no server of their own)."""
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    env = {"PREFECT_API_URL": PREFECT_API_URL.value(), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, env=env) as cluster:
        yield cluster.scheduler_address


def _run(province: Path, out: Path, runner) -> dict:
    from flows.province import province_reconciliation

    flow = province_reconciliation.with_options(task_runner=runner)
    return flow(inbox=str(province / "inbox"), db=str(out / "recon.duckdb"), reports=str(out / "reports"),
                as_of=AS_OF, config=str(province / "config"))


def _tables(db: Path) -> dict[str, pl.DataFrame]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for t in TABLES:
            frame = pl.from_arrow(con.sql(f"select * from {t}").to_arrow_table())
            out[t] = _sorted(frame.drop([c for c in frame.columns if c in VOLATILE]))
        [(counties,)] = con.execute("select counties from runs where status = 'succeeded'").fetchall()
        out["counts"] = {c: s.get("counts") for c, s in json.loads(counties).items()}
        return out
    finally:
        con.close()


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(sorted(frame.columns)).sort(sorted(frame.columns), nulls_last=True)


def _away(province: Path) -> pl.DataFrame:
    """Roster rows of students schooled away whose household is in an export of their home county."""
    def read(name: str) -> pl.DataFrame:
        return pl.read_csv(province / "truth" / name, schema_overrides={"sheet": pl.String, "row": pl.Int64}).with_columns(
            pl.col("sheet").fill_null(""))

    in_systems = read("records.csv").filter(pl.col("source") != "roster").select("person_id").unique()
    return read("away.csv").join(in_systems, on="person_id", how="semi")


@pytest.fixture(scope="module")
def two_workers(province: Path, scheduler: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    from flows.province import task_runner

    out = tmp_path_factory.mktemp("two")
    return _run(province, out, task_runner(scheduler=scheduler)), out


def test_students_schooled_away_are_found_in_their_home_exports(province: Path, two_workers) -> None:
    counts, out = two_workers
    assert counts["counties"] == 3 and counts["failed"] == {}
    # each county reports its candidates per roster row, as a county run does
    for county in counts["per_county"].values():
        assert all(0 < county[f"candidates_mean_{s}"] <= county[f"candidates_max_{s}"] <= 200 for s in ("dibao", "filing"))
    away = _away(province)
    assert away.height >= 5
    con = duckdb.connect(str(out / "recon.duckdb"), read_only=True)
    try:
        links = pl.from_arrow(con.sql("select * from matches where status = 'matched'").to_arrow_table())
        items = pl.from_arrow(con.sql("select * from discrepancies").to_arrow_table())
        fitted = con.sql("select county, system from model_parameters group by all order by all").fetchall()
    finally:
        con.close()
    # each county's own matching model is stored under its name
    assert fitted == sorted((c["county"], s) for c in _notes(province) for s in ("dibao", "filing"))
    rows = away.select(pl.col("file").alias("roster_file"), pl.col("sheet").alias("roster_sheet"),
                       pl.col("row").alias("roster_row"), pl.col("county").alias("home"))
    found = rows.join(links, on=["roster_file", "roster_sheet", "roster_row"], how="inner")
    # linked into the exports of the county the household lives in, from the school's county
    assert found.select("roster_file", "roster_sheet", "roster_row").unique().height >= 0.9 * away.height
    assert (found["system_county"] == found["home"]).all()
    assert (found["county"] != found["home"]).all()
    assert found["system_file"].str.starts_with(found["home"] + "/").all()
    # never not_found; an item about a borrowed record says whose export it came from
    keys = rows.rename({"roster_file": "file", "roster_sheet": "sheet", "roster_row": "row"})
    theirs = items.join(keys, on=["file", "sheet", "row"], how="inner")
    assert theirs.filter(pl.col("kind") == "not_found").is_empty()
    borrowed = theirs.filter(pl.col("system_county").is_not_null() & (pl.col("system_county") != pl.col("county")))
    assert borrowed.height and borrowed["message"].str.contains("导出中找到").all()
    assert (borrowed["system_county"] == borrowed["home"]).all()
    # every county's workbooks under <reports>/<night>/<county>/
    night = Path(counts["reports"])
    assert sorted(p.name for p in night.iterdir()) == sorted(c["county"] for c in _notes(province))
    assert all(any((night / c["county"]).glob("*.xlsx")) for c in _notes(province))


def _notes(province: Path) -> list[dict]:
    return json.loads((province / "truth" / "notes.json").read_text(encoding="utf-8"))["counties"]


def test_one_worker_gives_the_same_tables_and_a_county_that_cannot_be_read_fails_alone(
        province: Path, two_workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run on one worker, of the same counties plus one whose share is not there: the
    three counties' tables equal the two-worker run's; the fourth fails loudly, alone."""
    import flows.province
    from prefect.task_runners import ThreadPoolTaskRunner

    # The missing county's matching is still retried once, but at once: the flow's 5 s pause
    # (for a share that comes back) would hold this run's one worker twice here.
    monkeypatch.setattr(flows.province, "match_county", flows.province.match_county.with_options(retry_delay_seconds=0))

    broken = tmp_path / "province"
    (broken / "inbox").mkdir(parents=True)
    for county in (province / "inbox").iterdir():
        os.symlink(county, broken / "inbox" / county.name)
    os.symlink(tmp_path / "not-mounted", broken / "inbox" / UNMOUNTED)  # a county share that is not there
    os.symlink(province / "config", broken / "config")
    counts = _run(broken, tmp_path, ThreadPoolTaskRunner(max_workers=1))
    assert set(counts["failed"]) == {UNMOUNTED} and counts["counties"] == 4

    _, out2 = two_workers
    one, two = _tables(tmp_path / "recon.duckdb"), _tables(out2 / "recon.duckdb")
    for table in TABLES:
        assert one[table].height > 0 or table in ("export_problems", "household_changes")
        assert one[table].equals(two[table]), table
    assert {c: n for c, n in one["counts"].items() if c != UNMOUNTED} == two["counts"]
    assert one["records"]["county"].n_unique() == 3 and one["records"]["county"].null_count() == 0
    # the look-up's models are stored beside each county's own
    models = one["model_parameters"].select("county", "system_county", "system").unique()
    assert models.filter(pl.col("county") != pl.col("system_county")).height > 0
    assert models.filter(pl.col("county") == pl.col("system_county")).height == 6

    con = duckdb.connect(str(tmp_path / "recon.duckdb"), read_only=True)
    try:
        [(status, error, counties)] = con.execute("select status, error, counties from runs").fetchall()
    finally:
        con.close()
    assert status == "succeeded" and UNMOUNTED in error
    assert f'"{UNMOUNTED}": {{"error"' in counties

    _each_county_alone_is_its_part_of_the_province(province, one)
    _clerks_decisions_apply_the_next_night(broken, province / "truth", tmp_path, one)


def _each_county_alone_is_its_part_of_the_province(province: Path, tables: dict[str, pl.DataFrame]) -> None:
    """`recon run` on one county's inbox gives the province's records, row problems, own
    links and model of that county; the province adds only links into other counties'
    exports, for roster rows the county run could not place in a qualifying household."""
    settings = load_settings(province / "config")
    found_across = 0
    for county in sorted(p.name for p in (province / "inbox").iterdir()):
        alone = pipeline.reconcile(ingest.read_inbox(province / "inbox" / county, settings.header_aliases), settings,
                                   as_of=dt.date.fromisoformat(AS_OF), county=county)
        stored = pipeline.stored_tables(alone)
        mine = pl.col("county") == county
        for table, rows, lineage in (("records", mine, ["file"]), ("row_problems", mine, ["file"]),
                                     ("matches", mine & (pl.col("system_county") == county), ["roster_file", "system_file"]),
                                     ("model_parameters", mine & (pl.col("system_county") == county), [])):
            frame = stored[table]
            frame = pl.concat(frame, how="diagonal_relaxed") if isinstance(frame, list) else frame
            frame = frame.with_columns(pl.format("{}/{}", pl.lit(county), c).alias(c) for c in lineage)
            province_part = tables[table].filter(rows)
            assert province_part.height > 0, (county, table)
            assert _sorted(frame.select(province_part.columns)).equals(_sorted(province_part)), (county, table)
        across = tables["matches"].filter(mine & (pl.col("system_county") != county))
        lost = crosscounty.unresolved(crosscounty.Shard(county, alone.records, alone.matches), settings,
                                      dt.date.fromisoformat(AS_OF)).select(
            pl.format("{}/{}", pl.lit(county), "file").alias("roster_file"), pl.col("sheet").alias("roster_sheet"),
            pl.col("row").alias("roster_row"))
        assert across.join(lost, on=["roster_file", "roster_sheet", "roster_row"], how="anti").is_empty(), county
        found_across += across.height
    assert found_across > 0


def _clerks_decisions_apply_the_next_night(province: Path, truth_dir: Path, out: Path,
                                           tables: dict[str, pl.DataFrame]) -> None:
    """A clerk writes the right ID on an invalid-ID item of one county's workbook, and another
    says 不是同一人 on an item about a record found in another county's export; `recon review
    import` against the province database takes both; the next province night reads the
    roster row with that ID, and the rejected pair is not linked again."""
    from prefect.task_runners import ThreadPoolTaskRunner

    db = out / "recon.duckdb"
    records = tables["records"]
    truth = pl.read_csv(truth_dir / "records.csv", schema_overrides={"sheet": pl.String, "row": pl.Int64})
    truth = truth.with_columns(pl.col("sheet").fill_null(""))
    systems = truth.filter(pl.col("source") != "roster").join(
        records.filter(pl.col("id_status") == "valid").select("file", "sheet", "row", "id_norm"),
        on=["file", "sheet", "row"]).group_by("person_id").agg(pl.col("id_norm").first())
    items = tables["discrepancies"].filter(pl.col("kind") == "id_invalid").join(
        truth.select("file", "sheet", "row", "person_id"), on=["file", "sheet", "row"]).join(systems, on="person_id")
    item = items.sort("county", "item_ref").row(0, named=True)
    night = sorted(p for p in (out / "reports").iterdir() if p.is_dir())[-1]
    book = next(b for b in sorted((night / item["county"]).rglob("*.xlsx"))
                if _fill(b, item["item_ref"], "已更正", item["id_norm"]))
    away = tables["discrepancies"].filter(pl.col("system_county").is_not_null() & (pl.col("system_county") != pl.col("county"))
                                          & pl.col("kind").is_in(["name_mismatch", "id_mismatch", "needs_review"]))
    pair = away.sort("county", "item_ref").row(0, named=True)
    other = next(b for b in sorted((night / pair["county"]).glob("*.xlsx")) if _fill(b, pair["item_ref"], "不是同一人", None))
    assert import_workbooks([book, other], db, settings=load_settings(province / "config")).imported == 2

    counts = _run(province, out, ThreadPoolTaskRunner(max_workers=1))
    assert counts["per_county"][item["county"]]["clerk_corrections"] == 1
    assert counts["per_county"][pair["county"]]["clerk_rejections"] == 1
    con = duckdb.connect(str(db), read_only=True)
    try:
        [(id_norm, status)] = con.execute(
            "select id_norm, id_status from records where run_id = ? and source = 'roster' and file = ? and sheet = ? "
            "and row = ?", [counts["run_id"], item["file"], item["sheet"], item["row"]]).fetchall()
        still = con.execute(
            "select count(*) from matches where run_id = ? and roster_file = ? and roster_sheet = ? and roster_row = ? "
            "and system = ? and system_file = ? and system_row = ?",
            [counts["run_id"], pair["file"], pair["sheet"], pair["row"], pair["system"], pair["system_file"],
             pair["system_row"]]).fetchone()[0]
    finally:
        con.close()
    assert (id_norm, status) == (item["id_norm"], "valid")
    assert still == 0


def _fill(book: Path, ref: int, decision: str, value: str | None) -> bool:
    """Like a clerk: the decision (and a corrected value) on the row of item ``ref``, saved;
    False if not in this book."""
    wb = openpyxl.load_workbook(book)
    ws = wb[report.SHEET_PROBLEMS]
    col = {c.value: c.column for c in ws[report.HEADER_ROW]}
    for row in ws.iter_rows(min_row=report.HEADER_ROW + 1):
        if row[col[report.COL_REF] - 1].value == ref:
            for header, v in zip(report.REVIEW_HEADERS, (decision, value, None, "王老师")):
                ws.cell(row=row[0].row, column=col[header], value=v)
            wb.save(book)
            return True
    return False
