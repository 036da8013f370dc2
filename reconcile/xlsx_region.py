"""Pre-rendered data rows in an xlsxwriter worksheet: the sheet that writes them in place,
and the few cells ``reconcile.xlsx_rows`` leaves to xlsxwriter's own XML.

Why: xlsxwriter keeps writing everything around a sheet's data (title and header rows,
formats, merged cells, validation, protection, print set-up, the other sheets) while the
data rows, a night's millions of cells, come rendered column-wise from ``xlsx_rows``.
``RowsSheet`` takes those rows as one block, counts them in the sheet's dimensions, and
writes the block where its rows fall among the rows xlsxwriter holds (streamed at once in
constant-memory mode). ``write_rows`` is the bridge: it gives every format a cell uses its
xf index, builds rich text (the marked characters) and the text xlsxwriter escapes in the
XML xlsxwriter writes for them (shared strings, or inline when streaming), and hands the
rest to ``xlsx_rows``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from io import StringIO
from typing import Any

import polars as pl
from xlsxwriter.format import Format
from xlsxwriter.utility import _preserve_whitespace, _utf16_len, _utf16_truncate
from xlsxwriter.worksheet import Worksheet
from xlsxwriter.xmlwriter import XMLwriter

from reconcile.xlsx_rows import Column, Rendered, needs_escape, needs_quote, quoted, row_height_attrs, rows_xml

__all__ = ["RowsSheet", "Plan", "write_rows"]

# One column of the rows: sheet column (1-based), frame column, style names, write blanks.
Plan = tuple[int, str, tuple[str, ...], bool]
Style = Callable[[Sequence[str], bool], Format | None]  # (style names, quote prefix) -> format
_STRMAX = 32767
_ESCAPES = XMLwriter()  # its escaping methods, stateless
# What either of xlsxwriter's escapes would change in a run's text (XML's characters, its
# _xHHHH_ control escapes, non-characters): a cell without any is written as it is.
_ESCAPED = re.compile('_x[0-9a-fA-F]{4}_|["&<>\n\x00-\x08\x0b-\x1f\ufffe\uffff]')


class RowsSheet(Worksheet):
    """A worksheet that also writes blocks of pre-rendered ``<row>`` elements."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: list[tuple[int, int, str]] = []

    def put_rows(self, rows: Rendered) -> None:
        """Add ``rows`` (below every row written so far when streaming)."""
        if rows.first_row is None or rows.last_row is None:
            return
        first, last = rows.first_row, rows.last_row
        if self.constant_memory:
            if any(r >= first for r, cells in self.table.items() if cells) or any(r >= first for r in self.row_info
                                                                                  if r > self.previous_row):
                raise ValueError("streamed rows must come below every row written before them")
            self._write_single_row(first)  # flush the row before them
        self._check_dimensions(first, rows.first_col if rows.first_col is not None else (self.dim_colmin or 0))
        self._check_dimensions(last, rows.last_col if rows.last_col is not None else (self.dim_colmin or 0))
        if self.constant_memory:
            self.fh.write(rows.xml)
            self.previous_row = last
        else:
            self._blocks.append((first, last, rows.xml))

    def _write_rows(self) -> None:
        # xlsxwriter's rows, with each block written between those above and below it.
        if not self._blocks:
            super()._write_rows()
            return
        blocks = sorted(self._blocks)
        held = [r for r, cells in self.table.items() if cells] + list(self.row_info)
        if any(a <= r <= b for a, b, _x in blocks for r in held):
            raise ValueError("a row was written both cell by cell and as a block")
        lo, hi = self.dim_rowmin, self.dim_rowmax
        start = lo
        try:
            for first, last, xml in blocks:
                if start <= first - 1:
                    self.dim_rowmin, self.dim_rowmax = start, first - 1
                    super()._write_rows()
                self.fh.write(xml)
                start = last + 1
            if start <= hi:
                self.dim_rowmin, self.dim_rowmax = start, hi
                super()._write_rows()
        finally:
            self.dim_rowmin, self.dim_rowmax = lo, hi


def _style_attr(fmt: Format | None) -> str:
    return "" if fmt is None else f' s="{fmt._get_xf_index()}"'


def _font_xml(ws: Worksheet, fmt: Format) -> str:
    """The ``<rPr>`` xlsxwriter writes for a run in ``fmt``."""
    ws.rstring = XMLwriter()
    ws.rstring._set_filehandle(StringIO())
    ws._write_font(fmt)
    return ws.rstring.fh.getvalue()


def _string_cell(text: str, fmt: Format | None, ws: Worksheet, *, rich: bool = False, clean: bool = False) -> str:
    """The rest of a ``<c>`` element holding ``text`` (plain, or rich-text XML), as xlsxwriter writes it.
    ``clean``: ``text`` holds nothing the control-character escape would change."""
    if ws.constant_memory:
        if not clean:
            text = _ESCAPES._escape_control_characters(text)
        if rich:
            return f'{_style_attr(fmt)} t="inlineStr"><is>{text}</is></c>'
        preserve = ' xml:space="preserve"' if _preserve_whitespace(text) else ""
        return f'{_style_attr(fmt)} t="inlineStr"><is><t{preserve}>{_ESCAPES._escape_data(text)}</t></is></c>'
    return f'{_style_attr(fmt)} t="s"><v>{ws.str_table._get_shared_string_index(text)}</v></c>'


def _plain(text: str, styles: Sequence[str], style: Style, ws: Worksheet) -> str:
    """A text cell written by ``write_string`` (cut to Excel's limit, as it cuts)."""
    fmt = style(styles, needs_quote(text))
    if len(text) > _STRMAX // 2 and _utf16_len(text) > _STRMAX:
        text = _utf16_truncate(text, _STRMAX)
    return _string_cell(text, fmt, ws)


def _rich(text: str, spans: Sequence[tuple[int, int]], styles: Sequence[str], mark: str, style: Style,
          ws: Worksheet, fonts: dict[str, str]) -> str:
    """A text cell whose ``spans`` get ``mark``'s font: what ``Book.rich`` has xlsxwriter write."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    for i, j in spans:
        if i > pos:
            parts.append((False, text[pos:i]))
        parts.append((True, text[i:j]))
        pos = j
    if pos < len(text):
        parts.append((False, text[pos:]))
    if len(parts) == 1 and parts[0][0]:  # all of it marked: xlsxwriter wants two runs at least
        if len(text) < 2:
            return _plain(text, (*styles, mark), style, ws)
        parts = [(True, text[:1]), (True, text[1:])]
    if len(parts) < 2 or any(t == "" for _m, t in parts) or _utf16_len(text) > _STRMAX:
        return ""  # xlsxwriter refuses such a rich string and writes no cell
    if "mark" not in fonts:
        fonts["mark"], fonts["default"] = _font_xml(ws, style((mark,), False)), _font_xml(ws, Format())
    runs = []
    as_is = _ESCAPED.search(text) is None  # then no run's text needs an escape either
    for n, (marked, t) in enumerate(parts):  # as XMLwriter._xml_data_element writes each run's text
        font = fonts["mark" if marked else "default"] if marked or n > 0 else ""
        space = ' xml:space="preserve"' if _preserve_whitespace(t) else ""
        body = t if as_is else _ESCAPES._escape_control_characters(_ESCAPES._escape_data(t))
        runs.append(f"<r>{font}<t{space}>{body}</t></r>")
    # (the fonts' XML has no control characters or _xHHHH_: a clean text makes clean runs)
    return _string_cell("".join(runs), style(styles, needs_quote(text)), ws, rich=True, clean=as_is)


def _tails(frame: pl.DataFrame, plan: Sequence[Plan], style: Style, ws: Worksheet,
           rich: Mapping[Any, Mapping[str, Sequence[tuple[int, int]]]], key: str | None, mark: str,
           rich_styles: Sequence[str]) -> dict[str, dict[int, str]]:
    """Row position -> ready cell, per frame column: the texts xlsxwriter escapes, then the rich ones."""
    tails: dict[str, dict[int, str]] = {}
    texts = [(src, styles) for _col, src, styles, _blank in plan if frame.schema[src] == pl.String]
    if texts:  # few or none: one query says which columns hold any, a second where
        hit = frame.select(needs_escape(pl.col(src)).any().alias(src) for src, _s in texts).row(0)
        for src, styles in (t for t, h in zip(texts, hit) if h):
            odd = frame.with_row_index("_pos").filter(needs_escape(pl.col(src)).fill_null(False))
            for i, text in odd.select("_pos", src).iter_rows():
                tails.setdefault(src, {})[i] = _plain(text, styles, style, ws)
    if rich and key is not None:
        keys = frame.get_column(key).to_list()  # the rows here, not the whole map, are what is few
        idx = [i for i, k in enumerate(keys) if k in rich]
        fonts: dict[str, str] = {}
        marked = list(dict.fromkeys(src for i in idx for src in rich[keys[i]]))
        cells = frame.select(marked)[idx].to_dict(as_series=False)
        for n, i in enumerate(idx):
            for src, spans in rich[keys[i]].items():
                tails.setdefault(src, {})[i] = _rich(cells[src][n], spans, rich_styles, mark, style, ws, fonts)
    return tails


def _needed(data: pl.DataFrame, plan: Sequence[Plan], extra: Mapping[str, pl.Series]) -> list[pl.Expr]:
    """Per column: whether a cell it renders uses its format, and the format with the quote prefix."""
    out = []
    for n, (_col, src, _styles, blank) in enumerate(plan):
        v = pl.col(src)
        free = pl.col(extra[src].name).is_null() if src in extra else pl.lit(True)
        q = quoted(v).fill_null(False) if data.schema[src] == pl.String else pl.lit(False)
        out += [((free & v.is_not_null() & ~q).any() | (pl.lit(blank) & (free & v.is_null()).any())).alias(f"p{n}"),
                (free & q).any().alias(f"q{n}")]
    return out


def write_rows(ws: RowsSheet, first_row: int, frame: pl.DataFrame, plan: Sequence[Plan], *, style: Style,
               height: str | None = None, rich: Mapping[Any, Mapping[str, Sequence[tuple[int, int]]]] | None = None,
               key: str | None = None, mark: str = "", rich_styles: Sequence[str] = ()) -> None:
    """``frame``'s rows from sheet row ``first_row`` (1-based), one cell per ``plan`` column,
    as ``Book.value`` writes them (text as text, quote prefix where a text would run as a
    formula, integers as numbers, None blank where the plan says so); ``height`` names a
    column of row heights in points; ``rich`` maps a row's ``key`` value to its columns'
    marked character spans, written as ``Book.rich(..., mark, *rich_styles)`` does."""
    tails = _tails(frame, plan, style, ws, rich or {}, key, mark, rich_styles)
    extra = {}
    for src, cells in tails.items():
        series = pl.Series(f"_tail_{src}", [None] * frame.height, dtype=pl.String)
        extra[src] = series.scatter(list(cells), pl.Series(list(cells.values()), dtype=pl.String))
    data = frame.with_columns(extra.values())
    if height is not None:
        attrs = row_height_attrs(frame.get_column(height).drop_nulls().to_list())
        data = data.with_columns(pl.col(height).replace_strict(list(attrs), list(attrs.values()), default=None,
                                                               return_dtype=pl.String).alias("_ht"))
    flags = data.select(*_needed(data, plan, extra)).row(0)
    columns = []
    for n, (col, src, styles, blank) in enumerate(plan):
        fmt = style(styles, False) if flags[2 * n] else None
        qfmt = style(styles, True) if flags[2 * n + 1] else None
        columns.append(Column(col, src, fmt._get_xf_index() if fmt is not None else None,
                              qfmt._get_xf_index() if qfmt is not None else None, blank,
                              extra[src].name if src in extra else None))
    ws.put_rows(rows_xml(data, columns, first_row=first_row, height="_ht" if height is not None else None))
