"""Resident ID numbers (GB 11643): normalisation and the facts an ID carries.

Everything that runs over a frame is a polars expression (no per-row Python). The scalar
helpers (`check_char`, `is_valid_id`, `upgrade15`) exist for tests, the generator and small
use; they implement the same rules as the expressions.

`normalize_ids` adds, for an ID column, the columns

    {prefix}_norm    String  18 chars when recoverable, else the trustworthy/typed string
    {prefix}_status  String  valid | legacy15 | checksum | bad_date | bad_length | bad_chars
                             | number_damaged | sci_damaged | missing
    {prefix}_known   Int8    number of trustworthy leading characters of _norm
    {prefix}_birth   Date    from the ID, when the birth part is known and a real date
    {prefix}_gender  String  '男'/'女' from the 17th character, when known
    {prefix}_region  String  first 6 digits, when known

How the `kind` column (from ingest) is read:
  * "text" / null / column absent: the cell text as typed;
  * "number": a numeric Excel cell, written as the float's integer digits. Excel keeps 15
    significant digits, so an 18-digit value is `number_damaged` with the first 15 digits
    known (the value is first rounded to 15 significant digits, so '...230976' written by a
    reader that printed the exact float reads the same as '...231000'). A 15-digit legacy
    number is exact in a float and is read as a normal legacy ID;
  * any cell, whatever its kind, whose text is in scientific form ('4.30524E+17') is
    `sci_damaged`, with the mantissa's digits known.
"""

from __future__ import annotations

import datetime as _dt
import re

import polars as pl

__all__ = [
    "WEIGHTS",
    "CHECK_CHARS",
    "STATUSES",
    "YEAR_MIN",
    "YEAR_MAX",
    "check_char",
    "is_valid_id",
    "upgrade15",
    "check_char_expr",
    "normalize_ids",
    "digit_diff_positions",
    "is_adjacent_swap",
]

WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
STATUSES = (
    "valid",
    "legacy15",
    "checksum",
    "bad_date",
    "bad_length",
    "bad_chars",
    "number_damaged",
    "sci_damaged",
    "missing",
)
# Fixed plausibility window for the birth year (no clock inside this module).
YEAR_MIN = 1900
YEAR_MAX = 2030

# Characters removed anywhere in an ID cell (after NFKC): whitespace, zero-width
# characters, apostrophes and quotes (a leading ' forces text in Excel), backticks,
# hyphens/dashes, and '=' (the ="..." CSV trick).
_STRIP_RE = r"[\s\x{200B}-\x{200D}\x{2060}\x{FEFF}'‘’`\"“”\-‐‑‒–—―−_=]"
# Scientific form of a number: 4.30524E+17, 4.33124200501231e+17, 4E17
_SCI_RE = r"^([0-9])(?:\.([0-9]*))?[eE]\+?([0-9]{1,2})$"
_SCI_PY = re.compile(_SCI_RE)


# --------------------------------------------------------------------------- scalars
def check_char(first17: str) -> str:
    """Check character for the first 17 digits of an ID."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("check_char needs exactly 17 ASCII digits")
    total = sum(int(c) * w for c, w in zip(first17, WEIGHTS))
    return CHECK_CHARS[total % 11]


def _plausible_date(yyyymmdd: str) -> bool:
    try:
        d = _dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return YEAR_MIN <= d.year <= YEAR_MAX


def is_valid_id(s: str) -> bool:
    """Strict check of an already-normalised 18-character ID: 17 ASCII digits, a check
    character (upper-case X), a real birth date within YEAR_MIN..YEAR_MAX and the right
    check character. No cleaning is done here (use `normalize_ids` for raw cells)."""
    if not isinstance(s, str) or len(s) != 18 or not s.isascii():
        return False
    if not s[:17].isdigit() or not (s[17].isdigit() or s[17] == "X"):
        return False
    if not _plausible_date(s[6:14]):
        return False
    return check_char(s[:17]) == s[17]


def upgrade15(s15: str) -> str:
    """15-digit legacy ID -> 18 digits: insert '19' after the region, add the check char."""
    if len(s15) != 15 or not s15.isascii() or not s15.isdigit():
        raise ValueError("upgrade15 needs exactly 15 ASCII digits")
    first17 = s15[:6] + "19" + s15[6:]
    return first17 + check_char(first17)


# ------------------------------------------------------------------------ expressions
def check_char_expr(first17: pl.Expr) -> pl.Expr:
    """Check character of a String expression holding 17 ASCII digits (null otherwise)."""
    ok = first17.str.contains(r"^[0-9]{17}$")
    total = pl.sum_horizontal(
        [first17.str.slice(i, 1).cast(pl.Int32, strict=False) * w for i, w in enumerate(WEIGHTS)]
    )
    idx = (total % 11).cast(pl.Int32)
    # map 0..10 -> '10X98765432'
    char = idx.replace_strict(list(range(11)), list(CHECK_CHARS), return_dtype=pl.String)
    return pl.when(ok).then(char)


def _birth_expr(s: pl.Expr) -> pl.Expr:
    """Date from positions 6..13 of s (YYYYMMDD), null unless a real date in the window."""
    part = s.str.slice(6, 8)
    d = pl.when(part.str.contains(r"^[0-9]{8}$")).then(part).str.to_date("%Y%m%d", strict=False)
    yr = d.dt.year()
    return pl.when((yr >= YEAR_MIN) & (yr <= YEAR_MAX)).then(d)


def normalize_ids(
    df: pl.DataFrame,
    col: str,
    kind_col: str | None = None,
    prefix: str = "id",
) -> pl.DataFrame:
    """Add `{prefix}_norm/_status/_known/_birth/_gender/_region` for the ID column `col`.

    `kind_col` names the ingest kind column ("text" | "number" | "sci" | null); when it is
    None or absent from `df`, every cell is read as text.
    """
    raw = pl.col(col).cast(pl.String)
    if kind_col is not None and kind_col in df.columns:
        kind = pl.col(kind_col).cast(pl.String).str.to_lowercase()
    else:
        kind = pl.lit(None, dtype=pl.String)

    tmp = "__idc_"
    c_clean, c_kind, c_sci = f"{tmp}clean", f"{tmp}kind", f"{tmp}sci"
    clean = (
        raw.str.normalize("NFKC")
        .str.replace_all(_STRIP_RE, "")
        .str.to_uppercase()
    )
    # a numeric cell written with a trailing '.0' by some readers
    clean = (
        pl.when(kind == "number")
        .then(clean.str.replace(r"\.0+$", ""))
        .otherwise(clean)
    )

    lf = df.lazy().with_columns(
        pl.when(clean.str.len_chars() > 0).then(clean).alias(c_clean),
        kind.fill_null("text").alias(c_kind),
    )
    s = pl.col(c_clean)
    k = pl.col(c_kind)

    # ---- scientific form --------------------------------------------------------
    sci = s.str.extract_groups(_SCI_RE)
    lf = lf.with_columns(sci.alias(c_sci))
    g = pl.col(c_sci).struct
    sci_digits = pl.concat_str([g.field("1"), g.field("2").fill_null("")])
    sci_total = g.field("3").cast(pl.Int32, strict=False) + 1  # number of digits of the value
    is_sci = g.field("1").is_not_null()

    # ---- the plain-digit forms ----------------------------------------------------
    n = s.str.len_chars()
    digits_only = s.str.contains(r"^[0-9]+$")
    shape18 = s.str.contains(r"^[0-9]{17}[0-9X]$")
    is_number = (k == "number") & digits_only & ~is_sci

    # an 18-digit number cell: round to 15 significant digits, keep those 15
    number_damaged = is_number & (n == 18)
    as_int = pl.when(number_damaged).then(s).cast(pl.Int64, strict=False)
    rounded15 = ((as_int + 500) // 1000).cast(pl.String).str.slice(0, 15)

    legacy = digits_only & (n == 15) & ~is_sci
    up17 = pl.concat_str([s.str.slice(0, 6), pl.lit("19"), s.str.slice(6)])
    legacy_norm = pl.concat_str([up17, check_char_expr(up17)])

    # sci: complete 15-digit legacy shown in full (rare), or a damaged prefix
    sci_len = sci_digits.str.len_chars()
    sci_complete15 = is_sci & (sci_total == 15) & (sci_len == 15)
    sci_ok = is_sci & sci_total.is_in([15, 18]) & (sci_len <= sci_total)
    sci_legacy_norm = pl.concat_str([sci_digits.str.slice(0, 6), pl.lit("19"), sci_digits.str.slice(6)])
    sci_up17 = pl.concat_str([sci_digits.str.slice(0, 6), pl.lit("19"), sci_digits.str.slice(6)])

    full18 = shape18 & ~is_sci & ~is_number
    birth_full = _birth_expr(s)
    check_ok = check_char_expr(s.str.slice(0, 17)) == s.str.slice(17, 1)

    status = (
        pl.when(s.is_null()).then(pl.lit("missing"))
        .when(sci_complete15 & _birth_expr(sci_up17).is_not_null()).then(pl.lit("legacy15"))
        .when(sci_complete15).then(pl.lit("bad_date"))
        .when(sci_ok).then(pl.lit("sci_damaged"))
        .when(is_sci).then(pl.lit("bad_length"))
        .when(number_damaged).then(pl.lit("number_damaged"))
        .when(legacy & _birth_expr(up17).is_not_null()).then(pl.lit("legacy15"))
        .when(legacy).then(pl.lit("bad_date"))
        .when(full18 & birth_full.is_null()).then(pl.lit("bad_date"))
        .when(full18 & check_ok).then(pl.lit("valid"))
        .when(full18).then(pl.lit("checksum"))
        .when(s.str.contains(r"^[0-9]*X?$")).then(pl.lit("bad_length"))
        .otherwise(pl.lit("bad_chars"))
    )

    c_status = f"{prefix}_status"
    c_norm = f"{prefix}_norm"
    c_known = f"{prefix}_known"
    lf = lf.with_columns(status.alias(c_status))
    st = pl.col(c_status)

    norm = (
        pl.when(st == "missing").then(pl.lit(None, dtype=pl.String))
        .when(sci_ok & (sci_total == 15) & (sci_len > 6)).then(
            pl.when(sci_complete15)
            .then(pl.concat_str([sci_up17, check_char_expr(sci_up17)]))
            .otherwise(sci_legacy_norm)
        )
        .when(sci_ok).then(sci_digits)
        .when(st == "number_damaged").then(rounded15)
        .when(legacy).then(legacy_norm)
        .otherwise(s)
    )
    known = (
        pl.when(st.is_in(["valid", "legacy15"])).then(18)
        .when(st == "checksum").then(17)
        .when((st == "bad_date") & full18).then(pl.when(check_ok).then(18).otherwise(17))
        .when((st == "bad_date") & legacy).then(17)  # typed 15 + '19'; check is computed
        .when(st == "bad_date").then(17)
        .when(st == "number_damaged").then(15)
        .when(st == "sci_damaged").then(
            pl.when((sci_total == 15) & (sci_len > 6)).then(sci_len + 2).otherwise(sci_len)
        )
        .otherwise(0)
        .cast(pl.Int8)
    )
    lf = lf.with_columns(norm.alias(c_norm), known.alias(c_known))
    nm = pl.col(c_norm)
    kn = pl.col(c_known)

    birth = pl.when((kn >= 14) & (st != "bad_date")).then(_birth_expr(nm))
    seq_digit = nm.str.slice(16, 1).cast(pl.Int8, strict=False)
    gender = (
        pl.when((kn >= 17) & seq_digit.is_not_null())
        .then(pl.when(seq_digit % 2 == 1).then(pl.lit("男")).otherwise(pl.lit("女")))
    )
    region = pl.when(kn >= 6).then(nm.str.slice(0, 6))
    lf = lf.with_columns(
        birth.alias(f"{prefix}_birth"),
        gender.alias(f"{prefix}_gender"),
        region.alias(f"{prefix}_region"),
    )
    out_cols = [c_norm, c_status, c_known, f"{prefix}_birth", f"{prefix}_gender", f"{prefix}_region"]
    keep = [c for c in df.columns if c not in out_cols]
    return lf.select(keep + out_cols).collect()


# ----------------------------------------------------------------- matcher helpers
def _as_expr(x: pl.Expr | str) -> pl.Expr:
    return pl.col(x) if isinstance(x, str) else x


def digit_diff_positions(a: pl.Expr | str, b: pl.Expr | str) -> pl.Expr:
    """List[Int8] of the 0-based positions where two equal-length strings differ
    (an empty list when equal); null when either is null or the lengths differ.
    Positions beyond 127 do not fit Int8: meant for ID-length strings."""
    a, b = _as_expr(a), _as_expr(b)
    both = pl.when(a.str.len_chars() == b.str.len_chars()).then(
        pl.concat_list(a.str.split(""), b.str.split(""))
    )
    half = pl.len() // 2
    return both.list.eval(
        (pl.element().slice(0, half) != pl.element().slice(half)).arg_true().cast(pl.Int8)
    )


def is_adjacent_swap(a: pl.Expr | str, b: pl.Expr | str) -> pl.Expr:
    """True when b is a with exactly two adjacent, different characters swapped
    (false when equal; null when either side is null)."""
    a, b = _as_expr(a), _as_expr(b)
    pos = digit_diff_positions(a, b)
    p0 = pos.list.get(0, null_on_oob=True).cast(pl.Int64)
    p1 = pos.list.get(1, null_on_oob=True).cast(pl.Int64)
    res = (
        (pos.list.len() == 2)
        & (p1 - p0 == 1)
        & (a.str.slice(p0, 1) == b.str.slice(p1, 1))
        & (a.str.slice(p1, 1) == b.str.slice(p0, 1))
    )
    return (
        pl.when(a.is_null() | b.is_null()).then(pl.lit(None, dtype=pl.Boolean))
        .otherwise(res.fill_null(False))
    )
