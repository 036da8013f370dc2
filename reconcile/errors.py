"""One exception base for the project, carrying where in which input things went wrong."""

from __future__ import annotations

__all__ = ["ReconError", "InputError", "ConfigError", "RunLockedError", "redact"]


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


_ID_SHAPED = None


def redact(text: str) -> str:
    """Replace anything shaped like an ID number (15–18 digits, maybe ending in X) with a mask.

    For error texts from libraries that quote cell values (polars casts, for instance).
    """
    import re

    global _ID_SHAPED
    if _ID_SHAPED is None:
        _ID_SHAPED = re.compile(r"(?<![0-9])[0-9０-９]{14,17}[0-9０-９XxＸｘ](?![0-9])|[0-9]\.[0-9]+[Ee]\+?1[4-7]")
    return _ID_SHAPED.sub("[ID]", text)
