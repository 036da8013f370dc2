"""pandera (polars) models for each source after mapping and for each output table.

Schemas live apart from the code that checks them: `reconcile.normalize` runs the source
models and turns their failure cases into `row_problems` rows.
"""

from .outputs import DiscrepancySchema, MatchSchema, RowProblemSchema
from .sources import CHECK_FIELDS, CHECK_READS, SOURCE_SCHEMAS, DibaoSchema, FilingSchema, RosterSchema

__all__ = [
    "CHECK_FIELDS",
    "CHECK_READS",
    "SOURCE_SCHEMAS",
    "RosterSchema",
    "DibaoSchema",
    "FilingSchema",
    "MatchSchema",
    "DiscrepancySchema",
    "RowProblemSchema",
]
