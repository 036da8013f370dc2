"""Fill clerk workbooks through LibreOffice's own UNO API, as a clerk in Calc would.

Run with the system Python (``/usr/bin/python3``, which imports ``uno``), not the venv's:
``python3 _uno_fill.py PLAN.json``. PLAN holds ``port``, ``profile`` (a folder for a
private LibreOffice profile) and ``books``: a list of {``src``, ``dst``, ``filter``
(``Calc MS Excel 2007 XML`` or ``MS Excel 97``), ``cells``: [[sheet, "E12", "text" or
number, "string"|"value"], ...]}. Starts ``soffice --headless``, loads each workbook,
types into the cells (``setString`` as a clerk types text, ``setValue`` as a number cell
would hold it), stores it with the filter and quits. Prints one line per workbook.
"""

import json
import subprocess
import sys
import time

import uno
from com.sun.star.beans import PropertyValue


def _prop(name, value):
    p = PropertyValue()
    p.Name, p.Value = name, value
    return p


def _connect(port, tries=120):
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    for _ in range(tries):
        try:
            return resolver.resolve(f"uno:socket,host=127.0.0.1,port={port};urp;StarOffice.ComponentContext")
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.5)
    raise SystemExit("LibreOffice did not start")


def main(plan_path):
    with open(plan_path, encoding="utf-8") as fh:
        plan = json.load(fh)
    office = subprocess.Popen([
        "soffice", "--headless", "--invisible", "--norestore", "--nologo", "--nodefault",
        f"-env:UserInstallation=file://{plan['profile']}",
        f"--accept=socket,host=127.0.0.1,port={plan['port']};urp;",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ctx = _connect(plan["port"])
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        for book in plan["books"]:
            doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(book["src"]), "_blank", 0, (_prop("Hidden", True),))
            sheets = doc.getSheets()
            for sheet, ref, value, how in book["cells"]:
                cell = sheets.getByName(sheet).getCellRangeByName(ref)
                if how == "value":
                    cell.setValue(float(value))
                else:
                    cell.setString(str(value))
            doc.storeToURL(uno.systemPathToFileUrl(book["dst"]),
                           (_prop("FilterName", book["filter"]), _prop("Overwrite", True)))
            doc.close(True)
            print(f"LibreOffice: filled {len(book['cells'])} cells, saved with filter '{book['filter']}'", flush=True)
        try:
            desktop.terminate()
        except Exception:  # noqa: BLE001 - the bridge closes as office quits
            pass
    finally:
        try:
            office.wait(timeout=30)
        except subprocess.TimeoutExpired:
            office.kill()


if __name__ == "__main__":
    main(sys.argv[1])
