"""The canonical field names of each source, after header aliases are applied.

Every column a spreadsheet may carry maps to one of these (see config/header_aliases.toml).
"""

from __future__ import annotations

__all__ = ["SOURCES", "SYSTEMS", "FIELDS", "REQUIRED", "ID_FIELDS", "LINEAGE", "PLACE_FIELDS", "FEW_VALUES"]

SOURCES: tuple[str, ...] = ("roster", "dibao", "filing")
SYSTEMS: tuple[str, ...] = ("dibao", "filing")

LINEAGE: tuple[str, ...] = ("source", "file", "sheet", "row")

FIELDS: dict[str, tuple[str, ...]] = {
    "roster": (
        "seq", "school", "stage", "grade", "class_name", "name", "gender", "ethnicity",
        "birth_date", "id_number", "student_no", "boarding", "head_name", "head_id",
        "relation", "town", "village", "aid_item", "amount", "phone",
    ),
    "dibao": (
        "town", "village", "head_name", "head_id", "household_size", "name", "id_number",
        "relation", "dibao_category", "monthly_amount", "approved_date", "status",
    ),
    "filing": (
        "county_name", "town", "village", "household_no", "head_name", "person_no", "name",
        "id_number", "relation", "gender", "school_status", "household_type",
        "poverty_status", "exit_year",
    ),
}

# A sheet lacking one of these cannot be used for matching at all.
REQUIRED: dict[str, tuple[str, ...]] = {
    "roster": ("name",),
    "dibao": ("head_name",),
    "filing": ("name",),
}

# Columns holding ID numbers: read as text, never as numbers, and their cell kind recorded.
ID_FIELDS: tuple[str, ...] = ("id_number", "head_id")

# Added to every source's records (reconcile/places.py): the place key anything compares or
# groups on, and the name a report shows for it.
PLACE_FIELDS: tuple[str, ...] = ("town_key", "village_key", "town_name", "village_name")

# Record columns whose values come from a short list (a county's files and sheets, schools,
# places, codes and statuses): after matching the records hold them as Categorical (one
# 4-byte code a row instead of a 16-byte view and its text; on a prefecture, over a
# gigabyte of the rules' peak). What leaves the chain as a table is text again.
FEW_VALUES: tuple[str, ...] = (
    "source", "stage", "grade", "class_name", "gender", "gender_norm", "ethnicity",
    "boarding", "relation", "aid_item", "id_number_kind", "head_id_kind", "id_status",
    "head_id_status", "id_gender", "id_region", "dibao_category", "status", "status_norm", "county_name",
    "school_status", "household_type", "poverty_status", "poverty_status_norm", "exit_year",
)
