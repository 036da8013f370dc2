"""Bad inputs through the whole night: `recon run` in a subprocess on a small generated county
with every bad file of issue 11 beside the good ones, run once; then, per file, the good ones
read whole and each bad one in `row_problems` with its reason in Chinese (the technical
detail after it), naming file, sheet, row and column where they exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import duckdb
import polars as pl
import pytest

from countygen import SynthConfig, generate_county
from reconcile.config import load_settings
from reconcile.ingest import read_inbox
from reconcile.problems import reason

from conftest import make_id
from test_hostile_inputs import GOOD, raw_xlsx, truncated_xlsx, write_xlsx

ROOT = Path(__file__).resolve().parent.parent
ID_SHAPED = re.compile(r"\d{6}(?:19|20)\d{2}[01]\d[0-3]\d\d{3}[\dXx]")
HEADER = ["学校名称", "学生姓名", "身份证号", "出生日期", "资助金额"]
N = 60                                  # data rows of each hand-made CSV
LEAK_ID = "433124201305279576"           # in a file name: must never reach a log
LEAK_NAME = "欧阳泄露"                    # in a line with an unclosed quote
SCHOOL_90 = "花垣县" + "龙" * 84 + "希望小学"   # 90 characters, 270 bytes


def _rows(tag: str, n: int = N, school: str = "测试小学") -> list[list[str]]:
    return [HEADER] + [[school, f"{tag}{i:03d}", make_id(birth="20120305", seq=f"{i:03d}"),
                        "2012-03-05", "1000"] for i in range(1, n + 1)]


def _csv(rows: list[list[str]], end: str = "\n") -> bytes:
    return end.join(",".join(r) for r in rows).encode("utf-8") + end.encode()


def _mixed_ends(rows: list[list[str]]) -> bytes:
    ends = ("\r\n", "\n", "\r")
    return "".join(",".join(r) + ends[i % 3] for i, r in enumerate(rows)).encode("utf-8")


def _with_line(rows: list[list[str]], at: int, raw: bytes) -> bytes:
    """The CSV with line `at` (1-based, header = 1) replaced by raw bytes."""
    lines = [",".join(r).encode("utf-8") for r in rows]
    lines[at - 1] = raw
    return b"\n".join(lines) + b"\n"


def _prescan_xlsx(p: Path) -> Path:
    """A ~3 KB xlsx whose sheet XML is '<c ' repeated (the old pre-scan backtracked on it)."""
    raw_xlsx(p, GOOD)
    with zipfile.ZipFile(p) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["xl/worksheets/sheet1.xml"] = b'<?xml version="1.0"?><worksheet><sheetData>' + b"<c " * 350_000
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return p


def _patched_sheet(p: Path, extra: str = "", prolog: str = "") -> Path:
    raw_xlsx(p, GOOD)
    with zipfile.ZipFile(p) as z:
        files = {n: z.read(n).decode() for n in z.namelist()}
    x = files["xl/worksheets/sheet1.xml"]
    if prolog:
        x = x.replace('<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0" encoding="UTF-8"?>' + prolog)
    files["xl/worksheets/sheet1.xml"] = x.replace("</sheetData>", extra + "</sheetData>")
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return p


FAR = '<row r="{r}"><c r="XFD{r}"><v>1</v></c></row>'
XXE = '<!DOCTYPE w [<!ENTITY e SYSTEM "file:///etc/passwd">]>'


def build_inbox(base: Path) -> tuple[Path, Path, dict[str, int]]:
    """The county's inbox with every bad file beside its good ones; rows per good file."""
    county = base / "county"
    generate_county(county, SynthConfig(households=60, seed=11))
    inbox = base / "inbox"
    shutil.copytree(county / "inbox", inbox)
    clean = read_inbox(county / "inbox", load_settings(county / "config").header_aliases)
    expected = {}
    for t in clean.tables:
        expected[t.file] = expected.get(t.file, 0) + t.frame.height
    r = inbox / "roster"
    outside = base / "outside"
    outside.mkdir()
    (outside / "外部名单.csv").write_bytes(_csv(_rows("外部")))
    # the night fails or hangs
    truncated_xlsx(r / "截断.xlsx")
    (r / "空.csv").write_bytes(b"")
    with (r / "巨大.csv").open("wb") as fh:          # 457 MiB, sparse: refused unread
        fh.write(_csv(_rows("巨大", 3)))
        fh.truncate(457 * 2**20)
    (r / "说明.txt").write_text("请查收", encoding="utf-8")
    (inbox / "放错位置.csv").write_bytes(_csv(_rows("顶层", 3)))
    _patched_sheet(r / "远单元格.xlsx", FAR.format(r=1048576))
    _patched_sheet(r / "远单元格8000.xlsx", FAR.format(r=8000))
    _prescan_xlsx(r / "预扫描.xlsx")
    _patched_sheet(r / "外部实体.xlsx", prolog=XXE)
    (r / os.fsdecode("学生名单".encode("gbk") + b".csv")).write_bytes(_csv(_rows("国标")))
    (r / "长校名.csv").write_bytes(_csv(_rows("长校", 5, school=SCHOOL_90)))
    # rows lost without a word
    (r / "混合换行.csv").write_bytes(_mixed_ends(_rows("换行")))
    (r / "..\\..\\双龙镇.csv").write_bytes(_csv(_rows("双龙")))
    (r / "空字符.csv").write_bytes(_with_line(_rows("空字"), 21, "空字x,\x00,1".encode()))
    (r / "错编码.csv").write_bytes(_with_line(_rows("编码"), 31, "测试小学,编码错".encode("gbk") + b",1"))
    (r / "未闭引号.csv").write_bytes(_with_line(_rows("引号"), 41, f'测试小学,"{LEAK_NAME},1'.encode()))
    two = _rows("双号")
    two = [two[0] + ["身份证号"]] + [row[:2] + ["12345"] + row[3:] + [row[2]] for row in two[1:]]
    (r / "两列身份证.csv").write_bytes(_csv(two))
    tot = _rows("倒序")
    (r / "倒序合计.csv").write_bytes(_csv([tot[0], ["", "", "", "合 计", str(1000 * N)]] + tot[:0:-1]))
    # links, pipes
    (r / "外链.csv").symlink_to(outside / "外部名单.csv")
    (r / "密码.csv").symlink_to("/etc/passwd")
    (r / "内链.csv").symlink_to(r / "..\\..\\双龙镇.csv")
    (inbox / "dibao" / "外部目录").symlink_to(outside, target_is_directory=True)
    os.mkfifo(r / "管道.csv")
    # leaks
    write_xlsx(r / f"徐成_{LEAK_ID}_补报.xlsx", _rows("补报", 3))
    return county, inbox, expected


@pytest.fixture(scope="module")
def night(harness, tmp_path_factory: pytest.TempPathFactory):
    """`recon run` as a user runs it against a Prefect server (the session's test server,
    so its start-up is not paid again; tests/test_night.py runs it without one)."""
    from prefect.settings import PREFECT_API_URL

    base = tmp_path_factory.mktemp("night")
    county, inbox, expected = build_inbox(base)
    db, reports = base / "recon.duckdb", base / "reports"
    notes = json.loads((county / "truth" / "notes.json").read_text(encoding="utf-8"))
    env = dict(os.environ, PREFECT_HOME=str(base / "prefect"), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_API_URL=PREFECT_API_URL.value())
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "reconcile.cli", "run", "--inbox", str(inbox), "--db", str(db),
         "--reports", str(reports), "--config", str(county / "config"), "--as-of", notes["reference_date"]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    con = duckdb.connect(str(db), read_only=True)
    try:
        problems = con.sql("select * exclude (run_id) from row_problems").pl()
        records = con.sql("select file, count(*) as n from records group by file").pl()
        values = con.sql("select file, row, name, id_number from records where source = 'roster'").pl()
        runs = con.execute("select status, error from runs").fetchall()
    finally:
        con.close()
    return dict(proc=proc, seconds=seconds, problems=problems, records=dict(records.iter_rows()),
                values=values, runs=runs, expected=expected, reports=reports)


def _problems_of(night, file: str) -> list[dict]:
    return night["problems"].filter(pl.col("file") == file).sort("row", nulls_last=False).to_dicts()


def test_the_night_succeeds_and_reads_every_good_file_whole(night) -> None:
    assert night["proc"].returncode == 0, night["proc"].stderr[-3000:]
    assert night["runs"] == [("succeeded", None)]
    for file, n in night["expected"].items():
        assert night["records"].get(file) == n, file
    assert night["seconds"] < 300


# file, [(problem, sheet, row, column)], text in the value after the reason, rows read
FILE_CASES = [
    ("roster/截断.xlsx", [("unreadable_file", "", None, None)], "corrupt or truncated xlsx", 0),
    ("roster/空.csv", [("empty_file", "", None, None)], "", 0),
    ("roster/巨大.csv", [("too_large", "", None, None)], "457 MiB of text", 0),
    ("roster/说明.txt", [("unsupported_file", "", None, None)], ".txt", 0),
    ("放错位置.csv", [("file_outside_source_folder", "", None, None)], "", 0),
    ("roster/远单元格.xlsx", [("too_large", "名单", None, None)], "896.0 GiB", 0),
    ("roster/远单元格8000.xlsx", [("too_large", "名单", None, None)], "6.8 GiB", 0),
    ("roster/预扫描.xlsx", [("unreadable_file", "", None, None)], "corrupt or truncated xlsx", 0),
    ("roster/外部实体.xlsx", [("unreadable_file", "", None, None)], "DTD", 0),
    ("roster/\\xd1\\xa7\\xc9\\xfa\\xc3\\xfb\\xb5\\xa5.csv", [("file_name_not_utf8", "", None, None)], "escaped", N),
    ("roster/长校名.csv", [], None, 5),
    ("roster/混合换行.csv", [], None, N),
    ("roster/..\\..\\双龙镇.csv", [], None, N),
    ("roster/空字符.csv", [("bad_line", "", 21, None)], "NUL byte", N - 1),
    ("roster/错编码.csv", [("bad_line", "", 31, None)], "not utf-8", N - 1),
    ("roster/未闭引号.csv", [("bad_line", "", 41, None)], "unclosed quote", N - 1),
    ("roster/两列身份证.csv", [("duplicate_column", "", 1, "身份证号")], f"valid IDs: 0 of {N}", N),
    ("roster/倒序合计.csv", [], None, N),
    ("roster/外链.csv", [("symlink_skipped", "", None, None)], "outside the inbox", 0),
    ("roster/密码.csv", [("symlink_skipped", "", None, None)], "outside the inbox", 0),
    ("roster/内链.csv", [("symlink_skipped", "", None, None)], "inside the inbox", 0),
    ("dibao/外部目录", [("symlink_skipped", "", None, None)], "outside the inbox", 0),
    ("roster/管道.csv", [("not_a_regular_file", "", None, None)], "FIFO", 0),
    (f"roster/徐成_{LEAK_ID}_补报.xlsx", [], None, 3),
]


@pytest.mark.parametrize("file,expected,text,rows", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_each_bad_file_is_a_problem_row(night, file, expected, text, rows) -> None:
    probs = _problems_of(night, file)
    assert [(p["problem"], p["sheet"], p["row"], p["column"]) for p in probs] == expected
    for p in probs:
        assert p["value"].startswith(f"「{reason(p['problem'])}」"), p["value"]
        assert text in p["value"], p["value"]
        assert p["source"] == (None if "/" not in file else file.split("/")[0])
    assert night["records"].get(file, 0) == rows


def test_rows_come_through_clean(night) -> None:
    v = night["values"]
    mixed = v.filter(pl.col("file") == "roster/混合换行.csv")
    assert not mixed["name"].str.contains("[\r\n]").any()
    assert sorted(mixed["name"].to_list()) == [f"换行{i:03d}" for i in range(1, N + 1)]
    two = v.filter(pl.col("file") == "roster/两列身份证.csv")        # the column that validates
    assert two["id_number"].str.len_chars().min() == 18
    total = v.filter(pl.col("file") == "roster/倒序合计.csv")
    assert "合计" not in total["name"].to_list()
    quote = v.filter(pl.col("file") == "roster/未闭引号.csv")
    assert quote.filter(pl.col("row") > 41).height == N - 40      # rows after the bad line kept


def test_long_school_name_gets_its_workbook(night) -> None:
    books = [p.name for p in night["reports"].rglob("*.xlsx")]
    assert any(name.startswith(SCHOOL_90[:20]) for name in books), books
    assert all(len(name.encode("utf-8")) <= 255 for name in books)


def test_nothing_personal_in_the_output(night) -> None:
    out = night["proc"].stdout + night["proc"].stderr
    assert LEAK_ID not in out and not ID_SHAPED.search(out)
    assert LEAK_NAME not in out
    assert "徐成_433124********9576_补报.xlsx" in out               # the file is named, its ID masked
