"""One exception base for the project, carrying where in which input things went wrong."""

from __future__ import annotations

import re

from .vocabulary import mask_text

__all__ = ["ReconError", "InputError", "ConfigError", "RunLockedError", "redact", "scrub"]


class ReconError(Exception):
    """Base of every error recon raises on purpose."""


class InputError(ReconError):
    """A spreadsheet (or part of one) that cannot be used; names file, sheet, row and column.

    Never put a cell value that may be an ID number or a name into the message.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str,
        sheet: str = "",
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.sheet = sheet
        self.row = row
        self.column = column
        where = [f"file {file!r}"]
        if sheet:
            where.append(f"sheet {sheet!r}")
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {reason}")


class ConfigError(ReconError):
    """A configuration file that is missing, malformed or contradicts itself."""


class RunLockedError(ReconError):
    """Another run holds the database for writing."""


# Text a library quotes: 'x', "x", `x` (polars quotes a whole CSV row in backticks), 「x」.
_QUOTED = re.compile(r"'([^'\n]{0,300})'|\"([^\"\n]{0,300})\"|`([^`]{0,2000})`|「([^」]{0,300})」")
# Quoted text that is a column or check name (ours are snake_case ASCII), kept.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}(?::[a-z0-9_]{1,40})?")


def redact(text: str) -> str:
    """Text with anything shaped like an ID number masked (``vocabulary.mask_text``).

    For error texts from libraries that quote cell values (polars casts, for instance), and
    for paths before they are logged (a file named after a student holds the ID).
    """
    return mask_text(text)


def scrub(text: str, keep: frozenset[str] = frozenset()) -> str:
    """Library error text without the cell values it quotes: every quoted piece becomes
    ``…`` unless it is a column or check name (snake_case ASCII, or one of ``keep``, e.g.
    header texts); ID-shaped numbers are masked everywhere."""

    def repl(m: re.Match) -> str:
        inner = next(g for g in m.groups() if g is not None)
        if inner in keep or _NAME.fullmatch(inner):
            return m.group(0)
        q = m.group(0)[0]
        return f"{q}…{ {'「': '」'}.get(q, q)}"

    return redact(_QUOTED.sub(repl, text))
