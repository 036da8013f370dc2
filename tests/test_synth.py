"""The synthetic county generator: layout, lineage of every truth row, determinism, error scaling."""

from __future__ import annotations

import ast
import csv
import json
import re
import subprocess
import sys
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import polars as pl
import pytest

import countygen
from countygen.confusions import accent_variants, reading, traditional
from countygen.places import PLACE_KINDS
from countygen import (
    SynthError,
    DIBAO_HEADERS,
    DIBAO_HEADS_ONLY_HEADERS,
    ERROR_CODES,
    EXPECTED_KINDS,
    FILING_HEADERS,
    SynthConfig,
    generate_county,
    id_check_char,
)

HOUSEHOLDS = 200
SOURCES = ("roster", "dibao", "filing")
TRUTH_FILES = ("persons.csv", "households.csv", "records.csv", "expected.csv", "places.csv", "notes.json")


# ------------------------------------------------------------------------------ helpers


def cell_text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def read_csv_lines(path: Path) -> dict[int, list[str]]:
    raw = path.read_bytes()
    text = raw[3:].decode("utf-8") if raw.startswith(b"\xef\xbb\xbf") else raw.decode("gb18030")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {i + 1: next(csv.reader([line.rstrip("\r")])) for i, line in enumerate(lines)}


def read_sheets(path: Path) -> dict[str, dict[int, list[object]]]:
    """sheet -> Excel row number -> raw cell values ('' sheet for CSV)."""
    if path.suffix == ".csv":
        return {"": dict(read_csv_lines(path))}
    if path.suffix == ".xlsx":
        wb = openpyxl.load_workbook(path)
        out: dict[str, dict[int, list[object]]] = {}
        for ws in wb.worksheets:
            out[ws.title] = {row[0].row: [c.value for c in row] for row in ws.iter_rows()}
        return out
    assert path.suffix == ".xls"
    import fastexcel

    out = {}
    for name in fastexcel.read_excel(path).sheet_names:
        df = pl.read_excel(path, sheet_name=name, engine="calamine",
                           read_options={"header_row": None}, infer_schema_length=0)
        rows = df.rows()
        # calamine starts at the first non-empty row/column: A1 holds the title, so row i+1
        assert rows[0][0], f"{path.name}/{name}: A1 must be non-empty for calamine numbering"
        out[name] = {i + 1: list(r) for i, r in enumerate(rows)}
    return out


def load_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


class County:
    def __init__(self, root: Path, config: SynthConfig) -> None:
        self.root = root
        self.config = config
        self.summary = generate_county(root, config)
        self.inbox = root / "inbox"
        self.truth = root / "truth"
        self.persons = {p["person_id"]: p for p in load_csv(self.truth / "persons.csv")}
        self.households = {h["household_id"]: h for h in load_csv(self.truth / "households.csv")}
        self.records = load_csv(self.truth / "records.csv")
        self.expected = load_csv(self.truth / "expected.csv")
        self.notes = json.loads((self.truth / "notes.json").read_text(encoding="utf-8"))
        self.places: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        for row in load_csv(self.truth / "places.csv"):
            key = (row["file"], row["town"], row["village"])
            self.places.setdefault(key, []).append((row["town_as_written"], row["village_as_written"]))
        self._sheets: dict[str, dict[str, dict[int, list[object]]]] = {}

    def sheets(self, file: str) -> dict[str, dict[int, list[object]]]:
        if file not in self._sheets:
            self._sheets[file] = read_sheets(self.inbox / file)
        return self._sheets[file]

    def row(self, file: str, sheet: str, row: int) -> list[object]:
        return self.sheets(file)[sheet][row]

    def inbox_files(self) -> list[str]:
        return sorted(p.relative_to(self.inbox).as_posix() for p in self.inbox.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def counties(tmp_path_factory: pytest.TempPathFactory) -> dict[str, County]:
    out = {}
    for key, errors in (("e0", 0.0), ("e1", 1.0), ("e3", 3.0)):
        out[key] = County(tmp_path_factory.mktemp(key), SynthConfig(households=HOUSEHOLDS, seed=11, errors=errors))
    return out


# ------------------------------------------------------------------------------ layout


@pytest.mark.parametrize("key", ["e0", "e1", "e3"])
def test_inbox_has_files_per_source_and_truth_beside_it(counties: dict[str, County], key: str) -> None:
    c = counties[key]
    files = c.inbox_files()
    allowed = {"roster": (".xlsx",), "dibao": (".xls", ".csv"), "filing": (".csv", ".xlsx")}
    for source in SOURCES:
        mine = [f for f in files if f.startswith(source + "/")]
        assert mine, source
        assert all(f.endswith(allowed[source]) for f in mine), mine
    assert all(f.split("/")[0] in SOURCES and f.count("/") == 1 for f in files)
    # truth beside, never inside, the inbox
    assert c.truth.parent == c.inbox.parent
    for name in TRUTH_FILES:
        assert (c.truth / name).is_file()
        assert not list(c.inbox.rglob(name))
    assert c.summary.files == {s: sum(f.startswith(s + "/") for f in files) for s in SOURCES}
    assert c.summary.rows == dict(Counter(r["source"] for r in c.records))
    assert c.summary.expected == len(c.expected)


def test_shapes_present(counties: dict[str, County]) -> None:
    c = counties["e3"]
    roster = [f for f in c.inbox_files() if f.startswith("roster/")]
    two_sheets = merged_two_rows = totals = 0
    for f in roster:
        wb = openpyxl.load_workbook(c.inbox / f)
        two_sheets += len(wb.sheetnames) > 1
        for ws in wb.worksheets:
            merged_two_rows += any(r.min_row != r.max_row for r in ws.merged_cells.ranges)
            totals += any(row[0].value == "合计" for row in ws.iter_rows())
    assert two_sheets >= 1
    assert merged_two_rows >= 1
    assert totals >= 1
    dibao = [f for f in c.inbox_files() if f.startswith("dibao/")]
    headers = []
    for f in dibao:
        for rows in c.sheets(f).values():
            headers.append(tuple(rows[2 if f.endswith(".xls") or f.endswith(".csv") else 1]))
    assert tuple(DIBAO_HEADERS) in headers
    assert tuple(DIBAO_HEADS_ONLY_HEADERS) in headers
    filing = [f for f in c.inbox_files() if f.startswith("filing/")]
    boms = [(c.inbox / f).read_bytes().startswith(b"\xef\xbb\xbf") for f in filing if f.endswith(".csv")]
    assert any(boms) and not all(boms)
    statuses = set()
    for f in filing:
        for rows in c.sheets(f).values():
            hdr = 2 if f.endswith(".xlsx") else 1
            assert tuple(rows[hdr]) == FILING_HEADERS
            statuses |= {r[12] for n, r in rows.items() if n > hdr}
    assert {"0", "1", "未脱贫", "已脱贫(享受政策)"} <= statuses


def test_cut_village_missing_from_its_export(counties: dict[str, County]) -> None:
    c = counties["e1"]
    cut = c.notes["cut"]
    assert cut and cut["source"] == "filing"
    villages = {r[2] for n, r in c.sheets(cut["file"])[""].items() if n > 1}
    assert cut["village"] not in villages
    cut_hh = {h for h, row in c.households.items() if row["cut_from_export"] == "true"}
    assert cut_hh == set(cut["household_ids"]) and cut_hh
    in_records = {c.persons[r["person_id"]]["household_id"] for r in c.records if r["file"] == cut["file"]}
    assert not in_records & cut_hh
    assert counties["e0"].notes["cut"] is None


# ------------------------------------------------------------------------------ lineage


@pytest.mark.parametrize("key", ["e0", "e1", "e3"])
def test_every_record_points_at_its_persons_row(counties: dict[str, County], key: str) -> None:
    c = counties[key]
    for r in c.records:
        p = c.persons[r["person_id"]]
        values = [cell_text(v) for v in c.row(r["file"], r["sheet"], int(r["row"]))]
        codes = [e for e in r["errors"].split(";") if e]
        assert all(code in ERROR_CODES for code in codes), codes
        if not any(e.startswith("name_") for e in codes):
            assert p["name"] in values, (r, values)
        if not any(e.startswith("id_") for e in codes):
            assert p["id_number"] in values, (r, values)
        if r["source"] != "roster":
            spelled = c.places[(r["file"], p["town"], p["village"])]
            assert any(t in values and v in values for t, v in spelled), (r, spelled)
            assert r["head_person_id"] == c.households[p["household_id"]]["head_person_id"]
        else:
            assert r["head_person_id"] in c.persons


def test_records_cover_every_data_row(counties: dict[str, County]) -> None:
    """Clean county: the rows holding a person's true ID are exactly the records."""
    c = counties["e0"]
    ids = {p["id_number"] for p in c.persons.values()}
    seen = set()
    for f in c.inbox_files():
        for sheet, rows in c.sheets(f).items():
            for n, vals in rows.items():
                if any(cell_text(v) in ids for v in vals):
                    seen.add((f, sheet, n))
    recorded = {(r["file"], r["sheet"], int(r["row"])) for r in c.records}
    assert len(recorded) == len(c.records)
    assert seen == recorded


def test_numeric_and_sci_id_cells(counties: dict[str, County]) -> None:
    c = counties["e3"]
    kinds = Counter()
    for r in c.records:
        codes = r["errors"].split(";")
        for field_prefix, code in (("", "id_number"), ("head_", "head_id_number"),
                                   ("", "id_sci"), ("head_", "head_id_sci")):
            if code not in codes:
                continue
            kinds[code] += 1
            vals = c.row(r["file"], r["sheet"], int(r["row"]))
            if code.endswith("number"):
                nums = [v for v in vals if isinstance(v, float) and v > 1e17]
                assert nums, vals
                # Excel keeps 15 significant digits; int(v) would give ...4992, so go via %.15g
                digits = [str(int(Decimal(f"{v:.15g}"))) for v in nums]
                assert all(len(d) == 18 and d.endswith("000") for d in digits)
                if code == "id_number":
                    assert c.persons[r["person_id"]]["id_number"][:15] + "000" in digits
            else:
                assert any(isinstance(v, str) and re.fullmatch(r"\d(\.\d+)?E\+1[57]", v) for v in vals), vals
    assert kinds["id_number"] + kinds["head_id_number"] > 0
    assert kinds["id_sci"] + kinds["head_id_sci"] > 0


# ------------------------------------------------------------------------------ truth


@pytest.mark.parametrize("key", ["e0", "e1"])
def test_person_ids_valid(counties: dict[str, County], key: str) -> None:
    c = counties[key]
    ids = [p["id_number"] for p in c.persons.values()]
    assert len(set(ids)) == len(ids)
    regions = Counter()
    for p in c.persons.values():
        i = p["id_number"]
        assert re.fullmatch(r"\d{17}[\dX]", i)
        assert id_check_char(i[:17]) == i[17]
        assert i[6:14] == p["birth_date"].replace("-", "")
        assert (int(i[16]) % 2 == 1) == (p["gender"] == "男")
        regions[i[:6]] += 1
    assert regions.most_common(1)[0][0] == "433124"
    assert len(regions) >= 3  # a few people carry neighbouring codes


@pytest.mark.parametrize(
    ("first17", "check"),
    [("11010519491231002", "X"), ("44052418800101001", "4"), ("43312420140520508", "0")],
)
def test_id_check_char(first17: str, check: str) -> None:
    assert id_check_char(first17) == check


def test_expected_agrees_with_truth(counties: dict[str, County]) -> None:
    c = counties["e1"]
    assert {e["kind"] for e in c.expected} <= set(EXPECTED_KINDS)
    by_row = {(r["file"], r["sheet"], r["row"]): r for r in c.records}
    claims = Counter(r["person_id"] for r in c.records if r["source"] == "roster")
    kinds_of: dict[tuple[str, str, str], set[str]] = {}
    notes = json.loads((c.truth / "notes.json").read_text(encoding="utf-8"))
    cut = notes["cut"] or {}
    for e in c.expected:
        if e["kind"] == "missed_eligible":  # points at a system record of a child on no roster
            assert e["source"] in ("dibao", "filing")
            assert claims[by_row[(e["file"], e["sheet"], e["row"])]["person_id"]] == 0
            continue
        assert e["source"] == "roster"
        key = (e["file"], e["sheet"], e["row"])
        kinds_of.setdefault(key, set()).add(e["kind"])
        r = by_row[key]
        hh = c.households[c.persons[r["person_id"]]["household_id"]]
        if e["kind"] == "not_found":
            assert hh["in_filing"] == "false" and hh["in_dibao"] == "false"
        elif e["kind"] == "duplicate_claim":
            assert claims[r["person_id"]] >= 2
        elif e["kind"] == "id_invalid":
            assert set(r["errors"].split(";")) & {"id_digit", "id_swap", "id_number", "id_sci", "id_missing", "id_drop"}
        elif e["kind"] == "id_fact_conflict":
            assert set(r["errors"].split(";")) & {"birth_conflict", "gender_conflict", "id_family"}
        elif e["kind"] == "age_stage_mismatch":
            assert set(r["errors"].split(";")) & {"grade_age", "id_family"}
        elif e["kind"] == "subsidy_mismatch":
            assert "amount_wrong" in r["errors"].split(";")
        elif e["kind"] == "household_exited":
            # dibao 在保 only in a heads-only export the student can't be found in
            assert hh["poverty_status"] == "已脱贫(不再享受政策)"
            assert hh["dibao_status"] != "在保" or hh["dibao_heads_only"] == "true"
        elif e["kind"] == "dibao_stopped":
            assert hh["dibao_status"] in ("停保", "注销")
        elif e["kind"] == "export_incomplete":  # lives in the village cut from an export
            assert (hh["town"], hh["village"]) == (cut.get("town"), cut.get("village"))
    for r in c.records:
        if r["source"] != "roster":
            continue
        hh = c.households[c.persons[r["person_id"]]["household_id"]]
        kinds = kinds_of.get((r["file"], r["sheet"], r["row"]), set())
        if hh["in_filing"] == "false" and hh["in_dibao"] == "false":
            assert kinds & {"not_found", "export_incomplete"}
        if claims[r["person_id"]] >= 2:
            assert "duplicate_claim" in kinds


def test_not_found_share_and_system_sizes(tmp_path: Path) -> None:
    c = County(tmp_path, SynthConfig(households=1000, seed=3))
    roster = [r for r in c.records if r["source"] == "roster"]
    not_found = sum(e["kind"] == "not_found" for e in c.expected)
    assert 0.04 <= not_found / len(roster) <= 0.13
    assert c.summary.system_rows > 2 * c.summary.roster_rows
    heads_only = [h for h in c.households.values() if h["dibao_heads_only"] == "true"]
    assert heads_only


# ------------------------------------------------------------------------------ determinism and errors


def test_same_seed_same_output(counties: dict[str, County], tmp_path: Path) -> None:
    a = counties["e1"]
    b = County(tmp_path / "again", SynthConfig(households=HOUSEHOLDS, seed=11, errors=1.0))
    assert a.inbox_files() == b.inbox_files()
    for name in TRUTH_FILES:
        if name == "notes.json":
            continue
        assert (a.truth / name).read_bytes() == (b.truth / name).read_bytes(), name
    for f in a.inbox_files():
        if f.endswith((".csv", ".xls")):
            assert (a.inbox / f).read_bytes() == (b.inbox / f).read_bytes(), f
        else:
            assert a.sheets(f) == b.sheets(f), f
            ma = [sorted(map(str, ws.merged_cells.ranges)) for ws in openpyxl.load_workbook(a.inbox / f).worksheets]
            mb = [sorted(map(str, ws.merged_cells.ranges)) for ws in openpyxl.load_workbook(b.inbox / f).worksheets]
            assert ma == mb
    other = County(tmp_path / "other", SynthConfig(households=HOUSEHOLDS, seed=12, errors=1.0))
    assert (other.truth / "persons.csv").read_bytes() != (a.truth / "persons.csv").read_bytes()


def test_error_rate_scales(counties: dict[str, County]) -> None:
    def errors(c: County, places: bool) -> int:
        """Rows with a row error (places=False) or a place spelling (chosen per file and place)."""
        return sum(1 for r in c.records
                   if any((e in PLACE_KINDS) == places for e in r["errors"].split(";") if e))

    e0, e1, e3 = (errors(counties[k], False) for k in ("e0", "e1", "e3"))
    assert e0 == 0
    assert e1 > 0
    assert e3 > 2 * e1
    p0, p1, p3 = (errors(counties[k], True) for k in ("e0", "e1", "e3"))
    assert p0 == 0 < p1 < p3
    # a clean county still has households out of both systems, exited or stopped, but no damage
    clean_kinds = {e["kind"] for e in counties["e0"].expected}
    assert clean_kinds <= {"not_found", "household_exited", "dibao_stopped", "missed_eligible"}
    assert "id_invalid" in {e["kind"] for e in counties["e3"].expected}
    # the population does not depend on the error rate
    assert (counties["e0"].truth / "persons.csv").read_bytes() == (counties["e1"].truth / "persons.csv").read_bytes()


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    cfg = SynthConfig(households=3, seed=1)
    generate_county(tmp_path, cfg)
    with pytest.raises(FileExistsError):
        generate_county(tmp_path, cfg)
    with pytest.raises(SynthError):  # the CLI reports SynthError without a traceback
        generate_county(tmp_path, cfg)
    s = generate_county(tmp_path, cfg, overwrite=True)
    assert s.households == 3


@pytest.mark.parametrize("households", [1, 7])
def test_tiny_counties(tmp_path: Path, households: int) -> None:
    s = generate_county(tmp_path, SynthConfig(households=households, seed=5))
    assert s.households == households
    assert (tmp_path / "truth" / "records.csv").is_file()


# ------------------------------------------------------------------------------ independence

_PRODUCT = ("reconcile", "schemas")
_MATCHER_SOURCES = ("pypinyin", "opencc", "pycorrector", "same_stroke", "stroke.txt")


def test_countygen_imports_nothing_from_the_product(tmp_path: Path) -> None:
    """Generating a county loads no module of the product (imports may be lazy: generate one)."""
    code = (
        "import sys; from pathlib import Path; import countygen; "
        f"countygen.generate_county(Path({str(tmp_path / 'c')!r}), countygen.SynthConfig(households=30, seed=1, errors=3)); "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    loaded = set(ast.literal_eval(out.stdout.strip().splitlines()[-1]))
    assert not loaded & set(_PRODUCT), loaded & set(_PRODUCT)


@pytest.mark.parametrize("word", _PRODUCT)
def test_countygen_source_names_no_product_module(word: str) -> None:
    src = Path(countygen.__file__).parent
    for f in sorted(src.rglob("*.py")):
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            assert not re.match(rf"\s*(from|import)\s+{word}\b", line), f"{f.name}:{n}"


@pytest.mark.parametrize("word", _MATCHER_SOURCES)
def test_countygen_uses_none_of_the_matchers_sources(word: str) -> None:
    src = Path(countygen.__file__).parent
    for f in sorted(src.rglob("*.py")):
        assert word not in f.read_text(encoding="utf-8"), f.name


@pytest.mark.parametrize("word", ["sighan", "readings.tsv", "confusions", "name_errors"])
def test_the_product_reads_none_of_the_generators_tables(word: str) -> None:
    product = Path(countygen.__file__).parent.parent
    for pkg in _PRODUCT:
        for f in sorted((product / pkg).rglob("*.py")):
            assert word not in f.read_text(encoding="utf-8"), f"{pkg}/{f.name}"


# ------------------------------------------------------------------------------ error classes


def _one_char_apart(values: list[object], true: str) -> list[tuple[str, str]]:
    """(true character, written character) of each cell that differs from `true` in one place."""
    out = []
    for v in values:
        if isinstance(v, str) and len(v) == len(true) and v != true:
            diff = [(a, b) for a, b in zip(true, v) if a != b]
            if len(diff) == 1:
                out.append(diff[0])
    return out


def _swapped(true: str, sur: int) -> str:
    return true[:sur] + true[sur + 1] + true[sur] + true[sur + 2:]


def _observed() -> set[tuple[str, str]]:
    rows = (Path(countygen.__file__).parent / "data" / "sighan_confusions.tsv").read_text(encoding="utf-8").splitlines()
    return {tuple(r.split("\t")[:2]) for r in rows if r and not r.startswith("#")}


NAME_CLASS_CHECKS = {
    "homophone": lambda true, vals: any(reading(a) == reading(b) for a, b in _one_char_apart(vals, true)),
    "accent": lambda true, vals: any(b in accent_variants(a) and reading(a) != reading(b) for a, b in _one_char_apart(vals, true)),
    "confusion": lambda true, vals: any(pair in _observed() for pair in _one_char_apart(vals, true)),
    "traditional": lambda true, vals: traditional(true) in vals and traditional(true) != true,
    "transpose": lambda true, vals: any(_swapped(true, s) in vals for s in (1, 2) if len(true) - s >= 2),
    "given_only": lambda true, vals: any(true[s:] in vals for s in (1, 2) if len(true) > s),
}


def _name_records(c: County, klass: str) -> list[tuple[str, list[object]]]:
    out = []
    for r in c.records:
        codes = r["errors"].split(";")
        vals = c.row(r["file"], r["sheet"], int(r["row"]))
        if "name_" + klass in codes:
            out.append((c.persons[r["person_id"]]["name"], vals))
        if "head_name_" + klass in codes:
            out.append((c.persons[r["head_person_id"]]["name"], vals))
    return out


@pytest.mark.parametrize("klass", sorted(NAME_CLASS_CHECKS))
def test_name_error_classes_are_what_they_say(counties: dict[str, County], klass: str) -> None:
    recs = _name_records(counties["e3"], klass)
    assert recs, klass
    for true, vals in recs:
        assert NAME_CLASS_CHECKS[klass](true, vals), (klass, true, vals)


def test_accent_errors_escape_the_matchers_pinyin_key(counties: dict[str, County]) -> None:
    """The point of the accent class: the toneless pinyin key does not equate the two names."""
    from reconcile.names import pinyin_key

    recs = _name_records(counties["e3"], "accent")
    assert recs
    for true, vals in recs:
        written = [v for v in vals if isinstance(v, str) and len(v) == len(true) and v != true
                   and sum(a != b for a, b in zip(true, v)) == 1]
        assert all(pinyin_key(w) != pinyin_key(true) for w in written), (true, written)


def test_family_ids_belong_to_the_household(counties: dict[str, County]) -> None:
    c = counties["e3"]
    ids = {p["id_number"]: p for p in c.persons.values()}
    seen = 0
    for r in c.records:
        if "id_family" not in r["errors"].split(";"):
            continue
        seen += 1
        me = c.persons[r["person_id"]]
        vals = [cell_text(v) for v in c.row(r["file"], r["sheet"], int(r["row"]))]
        kin = [ids[v] for v in vals if v in ids and v != me["id_number"]]
        assert kin and all(k["household_id"] == me["household_id"] for k in kin)
        assert me["id_number"] not in vals
    assert seen


# ------------------------------------------------------------------------------ places


def test_places_spelled_per_file_and_recorded(counties: dict[str, County]) -> None:
    c = counties["e3"]
    kinds = Counter()
    for row in load_csv(c.truth / "places.csv"):
        kinds.update(k for k in row["spelling"].split(";") if k)
        cells = {cell_text(v) for rows in c.sheets(row["file"]).values() for vals in rows.values() for v in vals}
        for written in (row["town_as_written"], row["village_as_written"]):
            assert not written or written in cells, (row, written)
    assert set(kinds) == set(PLACE_KINDS), kinds
    # each file spells a place one way (but for a merged village's former households)
    by_file_town = Counter((f, t, tw) for (f, t, _), spelled in c.places.items() for tw, _ in spelled)
    towns_per_file = Counter((f, t) for f, t, _ in by_file_town)
    assert all(n == 1 for n in towns_per_file.values())


def test_alias_file_maps_old_names_to_villages(counties: dict[str, County]) -> None:
    import tomllib

    c = counties["e3"]
    aliases = tomllib.loads((c.root / "config" / "place_aliases.toml").read_text(encoding="utf-8"))
    assert set(aliases) == {"town", "village"} and aliases["village"]
    canonical = {p["village"] for p in c.persons.values()}
    assert not set(aliases["village"]) & canonical
    assert set(aliases["village"].values()) <= canonical
    for row in load_csv(c.truth / "places.csv"):
        if "village_alias" in row["spelling"]:
            assert aliases["village"][row["village_as_written"]] == row["village"]


def test_clean_county_spells_every_place_one_way(counties: dict[str, County]) -> None:
    rows = load_csv(counties["e0"].truth / "places.csv")
    assert rows and all(r["spelling"] == "" for r in rows)
    assert all(r["town_as_written"] in ("", r["town"]) and r["village_as_written"] in ("", r["village"]) for r in rows)
