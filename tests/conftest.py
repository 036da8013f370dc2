"""Shared builders: small in-memory sheets and valid synthetic ID numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reconcile.config import Settings, load_settings
from reconcile.idcard import check_char
from reconcile.ingest import IngestResult, PROBLEM_SCHEMA, SheetTable


def make_id(region: str = "433124", birth: str = "20120305", seq: str = "123") -> str:
    """A valid 18-character ID (synthetic)."""
    first17 = f"{region}{birth}{seq}"
    return first17 + check_char(first17)


def sheet(source: str, rows: list[dict[str, Any]], *, file: str | None = None, sheet_name: str = "Sheet1",
          first_row: int = 2) -> SheetTable:
    """A SheetTable as ingest would give it: lineage + canonical fields as text."""
    file = file or f"{source}/{source}.xlsx"
    fields = sorted({k for r in rows for k in r})
    data = {f: [None if r.get(f) is None else str(r[f]) for r in rows] for f in fields}
    frame = pl.DataFrame(
        {
            "source": [source] * len(rows),
            "file": [file] * len(rows),
            "sheet": [sheet_name] * len(rows),
            "row": list(range(first_row, first_row + len(rows))),
            **data,
        },
        schema_overrides={f: pl.String for f in fields} | {"row": pl.Int64},
    )
    for f in ("id_number", "head_id"):
        if f in fields and f"{f}_kind" not in fields:
            frame = frame.with_columns(pl.when(pl.col(f).is_not_null()).then(pl.lit("text")).alias(f"{f}_kind"))
    columns = {f: f"hdr_{f}" for f in fields if not f.endswith("_kind")}
    return SheetTable(source=source, file=file, sheet=sheet_name, frame=frame, columns=columns, header_row=first_row - 1)


def ingested(*tables: SheetTable) -> IngestResult:
    return IngestResult(tables=list(tables), problems=pl.DataFrame(schema=PROBLEM_SCHEMA), files_read=len(tables))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


# Place spellings as other exports write them (reconcile/places.py must see one place).
RESPELL_CHARS = str.maketrans({"坳": "凹", "垭": "丫", "湾": "塆", "寨": "砦"})


def _read_csv_text(path: Path) -> tuple[str, str]:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise ValueError(f"{path.name}: neither UTF-8 nor GB18030")


def _respell_csv(path: Path, town: Callable[[int, str], str], village: Callable[[int, str], str]) -> int:
    """Rewrite the town and village cells of a generated export CSV; returns rows changed."""
    text, enc = _read_csv_text(path)
    newline = "\r\n" if "\r\n" in text else "\n"
    rows = list(csv.reader(io.StringIO(text, newline="")))
    head = next(i for i, r in enumerate(rows) if any(c.startswith("乡镇") for c in r))
    ti = next(i for i, c in enumerate(rows[head]) if c.startswith("乡镇"))
    vi = next(i for i, c in enumerate(rows[head]) if c.startswith("村") or c == "行政村")
    changed = 0
    for n, r in enumerate(rows[head + 1:]):
        if len(r) > max(ti, vi) and r[vi]:
            r[ti], r[vi] = town(n, r[ti]), village(n, r[vi])
            changed += 1
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows(rows)
    path.write_bytes(buf.getvalue().encode(enc))
    return changed


def respell_county(inbox: Path) -> dict[str, str]:
    """One generated county's exports spelt as other clerks spell places: in the filing CSV of
    卫民镇 the town is a homophone without its suffix (为民) and villages alternately lose 村
    or get 村委会; in the dibao CSV
    the town is traditional (龍茶鄉), villages use variant characters (坳 -> 凹, 垭 -> 丫 ...)
    and 社区 becomes 社区居委会. Returns what was changed, file -> description."""
    filing = inbox / "filing" / "卫民镇_建档立卡人口.csv"
    dibao = next((inbox / "dibao").glob("*.csv"))
    n_f = _respell_csv(filing, lambda n, t: t.replace("卫民镇", "为民"),
                       lambda n, v: v.removesuffix("村") if n % 2 else (v + "委会" if v.endswith("村") else v))
    n_d = _respell_csv(dibao, lambda n, t: t.translate(str.maketrans({"龙": "龍", "乡": "鄉"})),
                       lambda n, v: v.translate(RESPELL_CHARS).replace("社区", "社区居委会"))
    assert n_f and n_d
    return {filing.name: f"{n_f} rows", dibao.name: f"{n_d} rows"}


@pytest.fixture(scope="session")
def generated_county(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`generated_county(households=, seed=)`: a county from the generator, made once per
    session for each shape and shared read-only (a test that edits files copies them)."""
    from countygen import SynthConfig, generate_county

    made: dict[tuple[int, int], Path] = {}

    def make(*, households: int, seed: int) -> Path:
        if (households, seed) not in made:
            out = tmp_path_factory.mktemp(f"county{households}_{seed}")
            generate_county(out, SynthConfig(households=households, seed=seed))
            made[households, seed] = out
        return made[households, seed]

    return make


@pytest.fixture(scope="session")
def harness():
    """One Prefect test server for every flow test of the session (its start-up is paid once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# ---- spreading the suite over the two xdist workers (pyproject: --dist loadfile) -----------
# A file is sent whole to one worker (its module fixtures made once), except these, whose tests
# share nothing dearer than session fixtures (the Prefect harness, generated counties) and so
# may run on either worker: their long tests then run side by side.
SPREAD = frozenset({"test_flow.py", "test_night.py", "test_review.py", "test_review_import.py", "test_serving.py"})
# The dearest first, "file" or "file::test" (measured: seconds each on the 2-core machine), so
# that the short tests fill the end of the run on both workers rather than one worker ending a
# long file alone while the other idles. Unlisted tests keep their collection order after these.
SLOW_FIRST = (
    "test_province.py",                                                  # 85: set-up and two runs
    "test_review.py::test_round_trip_two_nights_with_clerk_decisions",  # 38
    "test_night.py::test_kill_9_of_recon_run_between_publish_and_swap",  # 31
    "test_serving.py::test_serve_stops_on_sigterm",                      # 2 x 25-30
    "test_review_import.py::test_superseded_workbooks_carried_notes_and_one_reviewer_twice",  # 28
    "test_night.py::test_same_inputs_give_same_tables_and_cells",        # 25
    "test_flow.py::test_nightly_flow_end_to_end",                        # 24
    "test_night_inputs.py",                                              # 20: set-up, a `recon run`
    "test_model.py",                                                     # 20: the EM property
    "test_flow.py::test_no_id_or_name_reaches_logs_errors_or_prefect",   # 20
    "test_review_import.py::test_corrections_are_applied_or_refused_with_the_reason",  # 19
    "test_flow.py::test_exports_respelt_overnight_change_nothing",       # 17
    "test_review.py::test_monday_notebook_runs_against_a_generated_county",  # 16
    "test_clerk_night.py",                                               # 15: set-up, a flow run
    "test_places.py",                                                    # 12
    "test_review_import.py::test_what_clerks_send_back",                 # 11
    "test_flow.py::test_failed_run_is_marked_and_keeps_previous_results",  # 11
)


def _slow_rank(item: pytest.Item) -> int:
    name = getattr(item, "originalname", item.name)
    for rank, key in enumerate(SLOW_FIRST):
        file, _, test = key.partition("::")
        if item.path.name == file and test in ("", name):
            return rank
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The dearest tests first (with --no-loadscope-reorder xdist sends them in this order)."""
    items.sort(key=_slow_rank)  # stable: the rest keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadfile, but each test of a SPREAD file its own unit of work. (xdist's
    loadgroup marks groups by renaming node ids, which pytest 9 no longer lets it do.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndSpreadTests(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return nodeid if Path(file).name in SPREAD else file

    return FilesAndSpreadTests(config, log)
