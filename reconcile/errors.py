"""One exception base for the project, carrying where in which input things went wrong."""

from __future__ import annotations

from .vocabulary import mask_text

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


def redact(text: str) -> str:
    """Text with anything shaped like an ID number masked (``vocabulary.mask_text``).

    For error texts from libraries that quote cell values (polars casts, for instance).
    """
    return mask_text(text)
