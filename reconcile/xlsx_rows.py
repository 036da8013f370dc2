"""A sheet's data rows as SpreadsheetML, rendered column-wise in polars.

Why: a night writes a few million cells, and xlsxwriter spends 15-40 us of Python on each
(``write_*``, then ``_write_cell`` at close). Here every cell of a column is one polars
string expression, and each row one concatenation: the ``<row>``/``<c>`` elements
xlsxwriter would write for the same values and formats (see its ``_write_row``,
``_write_cell`` and ``_xml_inline_string``), so a reader gets the same cells back. Pure:
a frame and the formats' xf indices in, XML text out; ``reconcile.xlsx_book`` resolves the
formats, the shared strings and the cells this module does not render (``Column.tail``).

Text cells are inline strings (``t="inlineStr"``). A text whose XML would need
xlsxwriter's ``_xHHHH_`` escapes (see ``NEEDS_ESCAPE``) is left to the caller, as are rich
text and numbers outside what ``%.16G`` prints as the integer itself.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

__all__ = ["Column", "Rendered", "rows_xml", "quoted", "needs_quote", "FORMULA_START", "needs_escape", "column_letters", "row_height_attrs",
           "NEEDS_ESCAPE", "MAX_PLAIN_CHARS"]

# What makes Excel (or LibreOffice) treat a typed-in cell as a formula; CR is written as LF.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
# Python's str.isspace() class, which xlsxwriter's and needs_quote's regexes use: Rust's \s
# (Unicode White_Space) lacks only the information separators U+001C-U+001F.
_SPACE = r"[\s\x1c-\x1f]"
# needs_quote as a pattern: FORMULA_START first, or = + - @ after leading blanks.
_QUOTE = r"^[=+\-@\t\r\n]|^" + _SPACE + r"*[=+\-@]"
# Texts whose XML xlsxwriter escapes (_x005F_ before a literal _xHHHH_, control characters,
# the non-characters U+FFFE/U+FFFF), or that openpyxl alters when read as a shared string.
NEEDS_ESCAPE = r"_x[0-9a-fA-F]{4}_|x005F_|[\x00-\x08\x0B-\x1F\x{FFFE}\x{FFFF}]"
# Longer texts may pass Excel's 32,767 UTF-16 units and be cut by xlsxwriter: left to it.
MAX_PLAIN_CHARS = 32767 // 2
_DEFAULT_PX = 20  # xlsxwriter's default row height in pixels (15 pt)
_MAX_EXACT = 10**16  # integers below this print as themselves under %.16G


@dataclass(frozen=True)
class Column:
    """One column of the rows: its sheet column (1-based), the frame column it shows, the
    xf index of its format (None: the default format) and of that format with the quote
    prefix, whether an empty value still writes a (styled) blank cell, and a frame column
    of ready cells (the ``<c r="..."`` element's rest) that replace the value where set
    ("" writes no cell)."""

    col: int
    source: str
    xf: int | None
    xf_quote: int | None = None
    blank: bool = False
    tail: str | None = None


@dataclass(frozen=True)
class Rendered:
    """The rows' XML and the cell range they cover (0-based, as xlsxwriter's dimensions);
    the bounds are None when no row was written."""

    xml: str
    first_row: int | None
    last_row: int | None
    first_col: int | None
    last_col: int | None


def column_letters(col: int) -> str:
    """Excel's letters of a 1-based column (1 -> A, 27 -> AA)."""
    letters = ""
    while col > 0:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def needs_quote(text: str) -> bool:
    """Whether a text cell gets Excel's quote prefix (it would run as a formula if retyped)."""
    # (lstrip copies the text: only for one that starts with white space; the merge had lost this)
    return text.startswith(FORMULA_START) or (text[:1].isspace() and text.lstrip().startswith(FORMULA_START))


def quoted(text: pl.Expr) -> pl.Expr:
    """``needs_quote`` of each text."""
    return text.str.contains(_QUOTE)


def needs_escape(text: pl.Expr) -> pl.Expr:
    """Whether each text is one this module leaves to the caller (escapes, or too long)."""
    return text.str.contains(NEEDS_ESCAPE) | (text.str.len_chars() > MAX_PLAIN_CHARS)


def row_height_attrs(points: Sequence[float]) -> dict[float, str]:
    """The ``<row>`` attributes of each height in points, as xlsxwriter writes them
    (``set_row``: whole pixels; no attributes for the default height)."""
    out = {}
    for pt in set(points):
        px = int(pt * 4.0 / 3.0 + 0.5)
        out[pt] = "" if px == _DEFAULT_PX else f' ht="{px * 0.75:.16g}" customHeight="1"'
    return out


def _style(xf: int | None) -> str:
    return "" if xf is None else f' s="{xf}"'


def _text_cell(v: pl.Expr, c: Column) -> pl.Expr:
    esc = v.str.replace_many(["&", "<", ">"], ["&amp;", "&lt;", "&gt;"])  # xlsxwriter's _escape_data
    style = pl.lit(_style(c.xf)) if c.xf_quote is None else \
        pl.when(quoted(v)).then(pl.lit(_style(c.xf_quote))).otherwise(pl.lit(_style(c.xf)))
    preserve = pl.when(v.str.contains(f"^{_SPACE}|{_SPACE}$")).then(pl.lit(' xml:space="preserve"')).otherwise(pl.lit(""))
    return pl.concat_str(style, pl.lit(' t="inlineStr"><is><t'), preserve, pl.lit(">"), esc, pl.lit("</t></is></c>"))


def _number_cell(v: pl.Expr, c: Column) -> pl.Expr:
    return pl.concat_str(pl.lit(_style(c.xf) + "><v>"), v.cast(pl.String), pl.lit("</v></c>"))


@functools.lru_cache(maxsize=1024)  # a set of workbooks asks for the same few columns again and again
def _cell(c: Column, text: bool) -> pl.Expr:
    """One column's cells: '' where none is written (``_rq``: the row number and a quote)."""
    v = pl.col(c.source)
    value = _text_cell(v.cast(pl.String), c) if text else _number_cell(v, c)
    cell = pl.when(v.is_not_null()).then(value)
    if c.blank:
        cell = cell.otherwise(pl.lit(_style(c.xf) + "/>"))
    ref = pl.lit(f'<c r="{column_letters(c.col)}')
    if c.tail is None:
        return pl.concat_str(ref, pl.col("_rq"), cell).fill_null("")
    tail = pl.col(c.tail)
    return (pl.when(tail == "").then(pl.lit(""))
            .otherwise(pl.concat_str(ref, pl.col("_rq"), pl.coalesce(tail, cell))).fill_null(""))


def _kind(frame: pl.DataFrame, c: Column) -> bool:
    """Whether ``c`` is rendered as text (else as integers); refuses what it cannot render."""
    s = frame.get_column(c.source)
    if s.dtype == pl.String or s.dtype == pl.Null:
        return True
    if not s.dtype.is_integer():
        raise TypeError(f"column {c.source!r} is {s.dtype}: only text and integer columns are rendered")
    if s.len() > s.null_count() and s.abs().max() >= _MAX_EXACT:
        raise ValueError(f"column {c.source!r} holds integers %.16G would round")
    return False


def rows_xml(frame: pl.DataFrame, columns: Sequence[Column], *, first_row: int,
             height: str | None = None) -> Rendered:
    """The ``<row>`` elements of ``frame``'s rows, the first at sheet row ``first_row``
    (1-based); ``height`` names a column of ``row_height_attrs`` strings (null: no height
    set, and a row without cells is then not written)."""
    if frame.height == 0:
        return Rendered("", None, None, None, None)
    cols = sorted(columns, key=lambda c: c.col)
    names = [f"_c{i}" for i in range(len(cols))]
    row = pl.int_range(first_row, first_row + pl.len()).cast(pl.String)
    attrs = pl.col(height) if height is not None else pl.lit(None, dtype=pl.String)
    body = frame.with_columns(pl.concat_str(row, pl.lit('"')).alias("_rq")).select(
        *[_cell(c, _kind(frame, c)).alias(n) for c, n in zip(cols, names)], attrs.alias("_h"), row.alias("_r"))
    has_cells = pl.concat_str(names) != ""
    written = has_cells | pl.col("_h").is_not_null()
    tag = pl.concat_str(pl.lit('<row r="'), pl.col("_r"), pl.lit('"'), pl.col("_h").fill_null(""))
    xml, lo, hi, *hits = body.select(
        pl.when(has_cells).then(pl.concat_str(tag, pl.lit(">"), *names, pl.lit("</row>")))
        .when(written).then(pl.concat_str(tag, pl.lit("/>"))).otherwise(pl.lit("")).str.join("").alias("xml"),
        written.arg_true().min().alias("lo"), written.arg_true().max().alias("hi"),
        *[(pl.col(n) != "").any().alias(f"any{n}") for n in names],
    ).row(0)
    if lo is None:
        return Rendered("", None, None, None, None)
    used = [c.col - 1 for c, hit in zip(cols, hits) if hit]
    return Rendered(xml, first_row - 1 + lo, first_row - 1 + hi, min(used) if used else None,
                    max(used) if used else None)
