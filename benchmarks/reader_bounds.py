"""The readers' bounds on large hostile and large honest files: time and peak memory.

    .venv/bin/python benchmarks/reader_bounds.py [--csv-mib 120] [--keep DIR]

Each file is read by `ingest.read_file` in a fresh process, which reports its wall time, its
peak RSS above the RSS it had after the imports, and the size of the frames it returned (the
rows themselves). The figures to compare, printed in the same run:

* **beyond rows** = peak − baseline − returned frames, against the 1 GiB bound;
* **s/MiB** (wall, on a loaded machine; CPU seconds beside it) against the 10 s per MiB bound;
* the honest CSV against polars' own `read_csv` of the same file (a floor: the fastest
  reader of those bytes, with no line checks, no header finding, no bounds).

Cases: an honest CSV of `--csv-mib` MiB (a roster, 20 columns), the same with mixed line
ends, one NUL line and one unclosed quote; a 2.5 KB xlsx with one value in XFD1048576
(refused), one with a value in Z400000 (a 10M-cell grid, read); a 1 MiB `<c ` sheet; a
457 MiB CSV (sparse, refused before it is read).
Peak stays under 4 GB at the default size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADER = ["序号", "学校名称", "学段", "年级", "班级", "学生姓名", "性别", "民族", "出生日期", "身份证号",
          "是否寄宿", "户主姓名", "户主身份证号", "与户主关系", "乡镇", "村", "资助项目", "资助金额",
          "联系电话", "备注"]


def _status_mib(key: str) -> float:
    """VmRSS / VmHWM of this process (VmHWM, unlike ru_maxrss, starts afresh at exec)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _measure(path: str, reader: str) -> None:
    """In the child: read one file, print figures as JSON."""
    import polars as pl

    from reconcile.ingest import HEADER_ALIASES_FILE, load_header_aliases, read_file

    aliases = load_header_aliases([HEADER_ALIASES_FILE])
    base = _status_mib("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    if reader == "polars":
        frames = [pl.read_csv(path, infer_schema_length=0)]
        problems: list = []
    else:
        tables, problems = read_file(Path(path), source="roster", rel="roster/x", aliases=aliases)
        frames = [t.frame for t in tables]
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_mib("VmHWM")
    print(json.dumps({
        "seconds": seconds, "cpu": cpu, "peak": peak, "base": base,
        "frames": sum(f.estimated_size() for f in frames) / 2**20,
        "rows": sum(f.height for f in frames),
        "problems": sorted({p["problem"] for p in problems}),
    }))


def _roster_csv(path: Path, mib: int) -> None:
    import polars as pl

    n = int(mib * 2**20 / 305)           # about 305 bytes a row
    i = pl.int_range(0, n, eager=True)
    cols = {h: (i % 97).cast(pl.String) + f"{h}值" for h in HEADER}
    cols["序号"] = (i + 1).cast(pl.String)
    cols["身份证号"] = (i % 10**6 + 433124201200000000).cast(pl.String)
    pl.DataFrame(cols).write_csv(path)


def _hostile_csv(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    lines = data.split(b"\n")
    for k in range(1, len(lines) - 1, 3):
        lines[k] += b"\r"                 # CRLF on every third line
    lines[len(lines) // 3] = b'"\xe5\x9d\x8f,\x00'
    lines[2 * len(lines) // 3] = b'"unclosed,' + lines[2 * len(lines) // 3]
    dst.write_bytes(b"\n".join(lines).replace(b"\r\n\r", b"\r"))


def _xlsx(path: Path, extra: bytes = b"", sheet_xml: bytes | None = None) -> None:
    ns = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rows = ('<row r="1"><c r="A1" t="inlineStr"><is><t>学生姓名</t></is></c><c r="B1" t="inlineStr"><is><t>身份证号</t></is></c></row>'
            '<row r="2"><c r="A2" t="inlineStr"><is><t>张三</t></is></c><c r="B2"><v>1</v></c></row>').encode()
    sheet = sheet_xml or b'<?xml version="1.0" encoding="UTF-8"?><worksheet ' + ns + b"><sheetData>" + rows + extra + b"</sheetData></worksheet>"
    files = {
        "[Content_Types].xml": (
            b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            b'<Default Extension="xml" ContentType="application/xml"/>'
            b'<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            b'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            b"</Types>"),
        "_rels/.rels": (
            b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
            b"</Relationships>"),
        "xl/workbook.xml": b'<?xml version="1.0"?><workbook ' + ns + b' xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": sheet,
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv-mib", type=int, default=120)
    ap.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _measure(*args._child)
        return
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="recon-bounds-"))
    tmp.mkdir(parents=True, exist_ok=True)
    honest = tmp / "honest.csv"
    _roster_csv(honest, args.csv_mib)
    _hostile_csv(honest, tmp / "hostile.csv")
    far = b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
    _xlsx(tmp / "far_xfd1048576.xlsx", far)
    _xlsx(tmp / "far_z400000.xlsx", b'<row r="400000"><c r="Z400000"><v>1</v></c></row>')
    _xlsx(tmp / "c_repeated.xlsx", sheet_xml=b"<worksheet><sheetData>" + b"<c " * (2**20 // 3))
    with (tmp / "huge.csv").open("wb") as fh:        # 457 MiB on paper (sparse)
        fh.write(honest.read_bytes()[:65536])
        fh.truncate(457 * 2**20)
    cases = [("honest CSV", honest, "recon"), ("  floor: polars read_csv", honest, "polars"),
             ("CSV: mixed ends, NUL, unclosed quote", tmp / "hostile.csv", "recon"),
             ("xlsx, one value in XFD1048576", tmp / "far_xfd1048576.xlsx", "recon"),
             ("xlsx, one value in Z400000", tmp / "far_z400000.xlsx", "recon"),
             ("xlsx, 1 MiB of '<c '", tmp / "c_repeated.xlsx", "recon"),
             ("CSV of 457 MiB (sparse)", tmp / "huge.csv", "recon")]
    print(f"{'case':38} {'file':>10} {'rows':>9} {'wall s':>7} {'cpu s':>6} {'s/MiB':>6} {'peak MiB':>9} "
          f"{'rows MiB':>9} {'beyond rows':>11}  problems")
    for label, path, reader in cases:
        out = subprocess.run([sys.executable, __file__, "--_child", str(path), reader],
                             capture_output=True, text=True, cwd=ROOT, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        size = path.stat().st_size / 2**20
        beyond = r["peak"] - r["base"] - r["frames"]
        print(f"{label:38} {size:8.1f}MB {r['rows']:9,} {r['seconds']:7.2f} {r['cpu']:6.2f} {r['seconds'] / max(size, 1):6.2f} "
              f"{r['peak']:9.0f} {r['frames']:9.0f} {beyond:9.0f}MB  {','.join(r['problems']) or '-'}")
    print("bounds: beyond rows <= 1024 MB, s/MiB <= 10 (ingest.SECONDS_PER_MIB)")


if __name__ == "__main__":
    main()
