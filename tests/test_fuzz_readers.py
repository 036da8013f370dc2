"""Fuzzing the readers: byte mutations of small valid files fed to `ingest.read_file`.

Whatever the bytes, `read_file` returns (tables, problems) and never raises; each problem has
PROBLEM_SCHEMA's keys and a short reason. Mutations: flipped/overwritten bytes, inserted and
deleted runs, truncation; for xlsx also mutations of the sheet XML inside an intact zip (so
the fuzzing reaches calamine and the cell scan, not only the zip CRC check).
Crashes found are kept as regression cases in REGRESSIONS.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import polars as pl
import pytest
import xlwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.ingest import HEADER_ALIASES_FILE, PROBLEM_SCHEMA, load_header_aliases, read_file

from test_hostile_inputs import GOOD, raw_xlsx, write_xlsx

ALIASES = load_header_aliases([HEADER_ALIASES_FILE])
ROWS = [["花名册"], GOOD[0] + ["资助金额"], GOOD[1] + ["1000"], GOOD[2] + ["1500"], ["合计", "", "", "2500"]]


def _seed_files(tmp: Path) -> dict[str, bytes]:
    xls = xlwt.Workbook(encoding="utf-8")
    ws = xls.add_sheet("名单")
    for r, row in enumerate(ROWS):
        for c, v in enumerate(row):
            ws.write(r, c, v)
    buf = io.BytesIO()
    xls.save(buf)
    csv = "\n".join(",".join(r) for r in ROWS).encode("gb18030")
    html = ("<html><table>" + "".join(
        "<tr>" + "".join(f"<td x:num='{v}'>{v}</td>" if v.isdigit() else f"<td>{v}</td>" for v in r)
        + "</tr>" for r in ROWS) + "</table></html>").encode()
    return {
        ".xlsx": write_xlsx(tmp / "seed.xlsx", ROWS).read_bytes(),
        ".raw.xlsx": raw_xlsx(tmp / "seed_raw.xlsx", [
            r if i != 2 else [r[0], 't="e" <v>#N/A</v>', "<f>1+1</f><v/>", r[3]]
            for i, r in enumerate(ROWS)]).read_bytes(),
        ".xls": buf.getvalue(),
        ".csv": csv,
        ".html.xls": html,
    }


SEEDS = _seed_files(Path(__import__("tempfile").mkdtemp(prefix="recon-fuzz-")))


def _check(data: bytes, ext: str, tmp: Path) -> None:
    suffix = ".xlsx" if ext.endswith(".xlsx") else ext[-4:]
    path = tmp / f"f{suffix}"
    path.write_bytes(data)
    tables, problems = read_file(path, source="roster", rel=f"roster/f{suffix}", aliases=ALIASES)
    pl.DataFrame(problems, schema=PROBLEM_SCHEMA, orient="row")   # well-formed problems
    for p in problems:
        assert p["file"] == f"roster/f{suffix}"
        if p["problem"] in ("unreadable_file", "unreadable_sheet"):
            assert p["value"] and len(p["value"]) < 300
    for t in tables:
        assert t.frame["row"].dtype == pl.Int64
        assert t.frame["row"].null_count() == 0


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, ord("<"), ord('"'), ord(","), ord("\n")]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 64))]
        else:
            del data[i:]
    return bytes(data)


def _rezip(seed: bytes, member: str, new: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(seed)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, new if info.filename == member else zin.read(info.filename))
    return out.getvalue()


FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("ext", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutated_bytes_never_crash(tmp_path, ext, data) -> None:
    _check(data.draw(mutated(SEEDS[ext])), ext, tmp_path)


@pytest.mark.parametrize("seed", [".xlsx", ".raw.xlsx"])
@FUZZ
@given(data=st.data())
def test_mutated_sheet_xml_never_crashes(tmp_path, seed, data) -> None:
    member = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(io.BytesIO(SEEDS[seed])) as zf:
        xml = zf.read(member)
    _check(_rezip(SEEDS[seed], member, data.draw(mutated(xml))), ".xlsx", tmp_path)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list(',\t"\n\r=+-@#/x0123456789姓名学生身份证号合计䶮😀\x00\x07')),
                    max_size=300))
def test_arbitrary_text_never_crashes(tmp_path, text) -> None:
    _check(("学生姓名,身份证号\n" + text).encode("utf-8"), ".csv", tmp_path)
    _check(("<table><tr><td>学生姓名</td><td>身份证号</td></tr>" + text).encode("utf-8"), ".html.xls", tmp_path)


# Inputs that once crashed a reader (found by the fuzzing above or by hand), kept as cases.
REGRESSIONS: list[tuple[str, bytes]] = [
    ("html cell with colspan far beyond the table", ".html.xls",
     "<table><tr><td colspan='999999'>学生姓名</td><td>身份证号</td></tr><tr><td>甲</td><td>1</td></tr></table>".encode()),
    ("xml 2003 with huge ss:Index", ".xls",
     b'<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" '
     b'xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet"><Worksheet ss:Name="a"><Table>'
     b'<Row ss:Index="2"><Cell ss:Index="3"><Data ss:Type="String">x</Data></Cell></Row></Table></Worksheet></Workbook>'),
    ("csv of only quotes", ".csv", b'"""""\n"'),
    # calamine panics (pyo3 PanicException, a BaseException) on this mutated BIFF file
    ("xls that makes calamine panic", ".xls",
     (Path(__file__).parent / "fixtures" / "calamine_panic.xls").read_bytes()),
]


@pytest.mark.parametrize("label,ext,data", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_regressions(tmp_path, label, ext, data) -> None:
    _check(data, ext, tmp_path)


def test_calamine_panic_is_an_unreadable_file(tmp_path) -> None:
    path = tmp_path / "p.xls"
    path.write_bytes((Path(__file__).parent / "fixtures" / "calamine_panic.xls").read_bytes())
    _, probs = read_file(path, source="roster", rel="roster/p.xls", aliases=ALIASES)
    assert [p["problem"] for p in probs] == ["unreadable_file"]
    assert probs[0]["value"].startswith("「文件无法读取」corrupt or truncated xls: PanicException")
