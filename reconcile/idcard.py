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
    `sci_damaged`, with the mantissa's digits known. (Caveat: Excel's short display
    '4.30524E+17' is ROUNDED, so its last mantissa digit can be one too high; the 15-digit
    form '4.33124200501231E+17' is exact.) A 15-digit legacy value in full sci form is
    read as legacy15.

`_known` by status: valid/legacy15 18; checksum 17; bad_date 18 when the check character
agrees, else 17; number_damaged 15; sci_damaged the mantissa digits (+2 for a legacy
value with more than 6, as '19' is inserted); bad_length/bad_chars/missing 0.
Birth/gender/region need _known >= 14 / 17 / 6 (no birth for bad_date).
"""

from __future__ import annotations

import datetime as _dt

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
# The cell and kind columns normalize_ids reads its distinct pairs through.
_RAW, _KIND = "__idc_raw", "__idc_kind"
_PLAIN, _AT = "__idc_plain", "__idc_at"


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
_POW10 = [10**i for i in range(17)]


def check_char_expr(first17: pl.Expr) -> pl.Expr:
    """Check character of a String expression holding 17 ASCII digits (null otherwise)."""
    # In a batch of its own: the number is parsed once, not once for each of 17 weights.
    return first17.map_batches(_check_chars, return_dtype=pl.String, is_elementwise=True)


def _as_number17(first17: pl.Expr) -> pl.Expr:
    return pl.when(first17.str.contains(r"^[0-9]{17}$")).then(first17).cast(pl.Int64, strict=False)


def _check_of(x: pl.Expr) -> pl.Expr:
    """Check character of `_as_number17`'s number (a column: it is read 17 times)."""
    total = pl.sum_horizontal(
        [((x // _POW10[16 - i]) % 10) * w for i, w in enumerate(WEIGHTS)]
    )
    idx = (total % 11).cast(pl.Int8)
    char = idx.replace_strict(list(range(11)), list(CHECK_CHARS), return_dtype=pl.String)
    return pl.when(x.is_not_null()).then(char)


def _check_chars(first17: pl.Series) -> pl.Series:
    frame = first17.to_frame("v").select(_as_number17(pl.col("v")).alias("x"))
    return frame.select(_check_of(pl.col("x"))).to_series().alias(first17.name)


def _ymd(ymd: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Year, month and day numbers of a YYYYMMDD number."""
    return ymd // 10000, (ymd // 100) % 100, ymd % 100


def _ymd_number(s: pl.Expr) -> pl.Expr:
    part = s.str.slice(6, 8)
    return pl.when(part.str.contains(r"^[0-9]{8}$")).then(part).cast(pl.Int32, strict=False)


def _birth_of(y: pl.Expr, m: pl.Expr, d: pl.Expr) -> pl.Expr:
    """The date of year/month/day numbers (columns: each is read several times); null unless
    a real date with the year in YEAR_MIN..YEAR_MAX. Pure arithmetic (no parsing errors)."""
    leap = ((y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))).cast(pl.Int32)
    dim = (
        pl.when(m == 2).then(28 + leap)
        .when(m.is_in([4, 6, 9, 11])).then(30)
        .otherwise(31)
    )
    ok = (y >= YEAR_MIN) & (y <= YEAR_MAX) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= dim)
    first = pl.date(y.clip(YEAR_MIN, YEAR_MAX), m.clip(1, 12), 1)
    return pl.when(ok).then(first + pl.duration(days=(d - 1).clip(0, 30)))


def normalize_ids(
    df: pl.DataFrame,
    col: str,
    kind_col: str | None = None,
    prefix: str = "id",
) -> pl.DataFrame:
    """Add `{prefix}_norm/_status/_known/_birth/_gender/_region` for the ID column `col`.

    `kind_col` names the ingest kind column ("text" | "number" | "sci" | null); when it is
    None or absent from `df`, every cell is read as text. Existing output columns of the
    same names are replaced; the other columns are kept in their order.
    """
    out_cols = [f"{prefix}_{c}" for c in ("norm", "status", "known", "birth", "gender", "region")]
    has_kind = kind_col is not None and kind_col in df.columns
    cells = df.select(
        pl.col(col).cast(pl.String).alias(_RAW),
        (pl.col(kind_col).cast(pl.String) if has_kind else pl.lit(None, dtype=pl.String)).alias(_KIND),
    )
    # Read once per distinct (cell, kind): a household's head ID repeats on every member's row.
    distinct = cells.unique(maintain_order=True)  # in first-seen order: the reads stay local
    if distinct.height > 0.9 * cells.height:  # (nearly) all distinct: the join would cost more
        got = _id_facts(cells, prefix)
    else:
        got = cells.join(_id_facts(distinct, prefix), on=[_RAW, _KIND], how="left", nulls_equal=True,
                         maintain_order="left")
    keep = [c for c in df.columns if c not in out_cols]
    return df.select(keep).hstack(got.select(out_cols).get_columns())


def _nfkc(s: pl.Series) -> pl.Series:
    """`str.normalize("NFKC")`, run on the non-ASCII values only (ASCII is its own NFKC form,
    and nearly every ID cell is ASCII)."""
    odd = s.filter(s.str.len_bytes() != s.str.len_chars()).unique()
    if odd.is_empty():
        return s
    return s.replace(odd, odd.str.normalize("NFKC"))


def _id_facts(cells: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """`normalize_ids`' rules on the cells (`_RAW`) and their kinds (`_KIND`), in their order.
    Nearly every cell is already 17 digits and a check character, typed as text: those take
    `_plain_facts`' short way, the rest `_all_facts`."""
    kind = pl.col(_KIND).str.to_lowercase().fill_null("text")
    plain = (pl.col(_RAW).str.contains(r"^[0-9]{17}[0-9X]$") & (kind != "number")).fill_null(False)
    flagged = cells.with_columns(plain.alias(_PLAIN))
    if flagged[_PLAIN].all():
        return _plain_facts(cells, prefix)
    if not flagged[_PLAIN].any():
        return _all_facts(cells, prefix)
    flagged = flagged.with_row_index(_AT)
    parts = [
        _plain_facts(flagged.filter(pl.col(_PLAIN)).drop(_PLAIN), prefix, keep=(_AT,)),
        _all_facts(flagged.filter(~pl.col(_PLAIN)).drop(_PLAIN), prefix, keep=(_AT,)),
    ]
    return pl.concat(parts).sort(_AT).drop(_AT)


def _plain_facts(cells: pl.DataFrame, prefix: str, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """`_all_facts` for cells of 17 ASCII digits and a check character not typed as a number
    (nothing to clean, no scientific or legacy form): valid, checksum or bad_date."""
    s = pl.col(_RAW)
    T = "__idc_"
    lf = cells.lazy().with_columns(_as_number17(s.str.slice(0, 17)).alias(f"{T}x"), _ymd_number(s).alias(f"{T}ymd"))
    lf = lf.with_columns(e.alias(f"{T}{p}") for p, e in zip("ymd", _ymd(pl.col(f"{T}ymd"))))
    lf = lf.with_columns(
        _check_of(pl.col(f"{T}x")).alias(f"{T}chk"),
        _birth_of(pl.col(f"{T}y"), pl.col(f"{T}m"), pl.col(f"{T}d")).alias(f"{prefix}_birth"),
    )
    check_ok = (pl.col(f"{T}chk") == s.str.slice(17, 1)).fill_null(False)
    b17 = pl.col(f"{prefix}_birth")  # null exactly when the status is bad_date
    seq_digit = s.str.slice(16, 1).cast(pl.Int8, strict=False)
    lf = lf.with_columns(
        s.alias(f"{prefix}_norm"),
        pl.when(b17.is_null()).then(pl.lit("bad_date")).when(check_ok).then(pl.lit("valid"))
        .otherwise(pl.lit("checksum")).alias(f"{prefix}_status"),
        pl.when(check_ok).then(18).otherwise(17).cast(pl.Int8).alias(f"{prefix}_known"),
        pl.when(seq_digit % 2 == 1).then(pl.lit("男")).otherwise(pl.lit("女")).alias(f"{prefix}_gender"),
        s.str.slice(0, 6).alias(f"{prefix}_region"),
    )
    out_cols = [f"{prefix}_{c}" for c in ("norm", "status", "known", "birth", "gender", "region")]
    return lf.select(*keep, _RAW, _KIND, *out_cols).collect()


def _all_facts(cells: pl.DataFrame, prefix: str, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """`normalize_ids`' rules on any cells (`_RAW`) and their kinds (`_KIND`)."""
    kind = pl.col(_KIND).str.to_lowercase().fill_null("text")
    df = cells.with_columns(_nfkc(cells[_RAW]).alias(f"{_RAW}_nfkc"))

    T = "__idc_"
    # ---- 1: clean --------------------------------------------------------------
    clean = pl.col(f"{_RAW}_nfkc").str.replace_all(_STRIP_RE, "").str.to_uppercase()
    is_num_kind = kind == "number"
    clean = pl.when(is_num_kind).then(clean.str.replace(r"\.0+$", "")).otherwise(clean)
    lf = df.lazy().with_columns(
        pl.when(clean.str.len_chars() > 0).then(clean).alias(f"{T}s"),
        is_num_kind.alias(f"{T}numkind"),
    )
    s = pl.col(f"{T}s")

    # ---- 2: shape flags ---------------------------------------------------------
    g = s.str.extract_groups(_SCI_RE).struct
    lf = lf.with_columns(
        s.str.len_chars().cast(pl.Int32).alias(f"{T}n"),
        s.str.contains(r"^[0-9]+$").fill_null(False).alias(f"{T}digits"),
        s.str.contains(r"^[0-9]{17}[0-9X]$").fill_null(False).alias(f"{T}shape18"),
        pl.concat_str([g.field("1"), g.field("2").fill_null("")]).alias(f"{T}sd"),
        (g.field("3").cast(pl.Int32, strict=False) + 1).alias(f"{T}stotal"),
    )
    n, digits, shape18 = pl.col(f"{T}n"), pl.col(f"{T}digits"), pl.col(f"{T}shape18")
    sd, stotal = pl.col(f"{T}sd"), pl.col(f"{T}stotal")
    is_sci = sd.is_not_null()
    slen = sd.str.len_chars().cast(pl.Int32)
    lf = lf.with_columns(
        is_sci.alias(f"{T}sci"),
        (is_sci & stotal.is_in([15, 18]) & (slen <= stotal)).fill_null(False).alias(f"{T}sci_ok"),
        (is_sci & (stotal == 15) & (slen == 15)).fill_null(False).alias(f"{T}sci15"),
        slen.alias(f"{T}slen"),
        (pl.col(f"{T}numkind") & digits & (n == 18)).alias(f"{T}numdmg"),
        (digits & (n == 15)).alias(f"{T}legacy"),
    )
    sci, sci_ok, sci15 = pl.col(f"{T}sci"), pl.col(f"{T}sci_ok"), pl.col(f"{T}sci15")
    numdmg, legacy = pl.col(f"{T}numdmg"), pl.col(f"{T}legacy")
    full18 = shape18 & ~pl.col(f"{T}numkind")

    # ---- 3: the (up to) 17 leading characters to check / read the birth from ------
    def up(x: pl.Expr) -> pl.Expr:
        return pl.concat_str([x.str.slice(0, 6), pl.lit("19"), x.str.slice(6)])

    rounded15 = (
        ((pl.when(numdmg).then(s).cast(pl.Int64, strict=False) + 500) // 1000)
        .cast(pl.String)
        .str.slice(0, 15)
    )
    c17 = (
        pl.when(sci15).then(up(sd))
        .when(sci_ok & (stotal == 15) & (slen > 6)).then(up(sd))
        .when(sci_ok).then(sd)
        .when(numdmg).then(rounded15)
        .when(legacy).then(up(s))
        .otherwise(s.str.slice(0, 17))
    )
    lf = lf.with_columns(c17.alias(f"{T}c17"))
    c17 = pl.col(f"{T}c17")
    # The number and the date parts as columns first: the check and the date read each many times.
    lf = lf.with_columns(_as_number17(c17).alias(f"{T}x"), _ymd_number(c17).alias(f"{T}ymd"))
    lf = lf.with_columns(e.alias(f"{T}{p}") for p, e in zip("ymd", _ymd(pl.col(f"{T}ymd"))))
    lf = lf.with_columns(
        _check_of(pl.col(f"{T}x")).alias(f"{T}chk"),
        _birth_of(pl.col(f"{T}y"), pl.col(f"{T}m"), pl.col(f"{T}d")).alias(f"{T}birth"),
    )
    chk, b17 = pl.col(f"{T}chk"), pl.col(f"{T}birth")
    check_ok = (chk == s.str.slice(17, 1)).fill_null(False)

    # ---- 4: status, norm, known ---------------------------------------------------
    status = (
        pl.when(s.is_null()).then(pl.lit("missing"))
        .when(sci15 & b17.is_not_null()).then(pl.lit("legacy15"))
        .when(sci15).then(pl.lit("bad_date"))
        .when(sci_ok).then(pl.lit("sci_damaged"))
        .when(sci).then(pl.lit("bad_length"))
        .when(numdmg).then(pl.lit("number_damaged"))
        .when(legacy & b17.is_not_null()).then(pl.lit("legacy15"))
        .when(legacy).then(pl.lit("bad_date"))
        .when(full18 & b17.is_null()).then(pl.lit("bad_date"))
        .when(full18 & check_ok).then(pl.lit("valid"))
        .when(full18).then(pl.lit("checksum"))
        .when(s.str.contains(r"^[0-9]*X?$")).then(pl.lit("bad_length"))
        .otherwise(pl.lit("bad_chars"))
    )
    c_status, c_norm, c_known = f"{prefix}_status", f"{prefix}_norm", f"{prefix}_known"
    lf = lf.with_columns(status.alias(c_status))
    st = pl.col(c_status)
    norm = (
        pl.when(st == "missing").then(pl.lit(None, dtype=pl.String))
        .when(sci15 | legacy).then(pl.concat_str([c17, chk]))
        .when(sci_ok | numdmg).then(c17)
        .otherwise(s)
    )
    known = (
        pl.when(st.is_in(["valid", "legacy15"])).then(18)
        .when(st == "checksum").then(17)
        .when((st == "bad_date") & full18 & check_ok).then(18)
        .when(st == "bad_date").then(17)
        .when(st == "number_damaged").then(15)
        .when(st == "sci_damaged").then(c17.str.len_chars().cast(pl.Int32))
        .otherwise(0)
        .cast(pl.Int8)
    )
    lf = lf.with_columns(norm.alias(c_norm), known.alias(c_known))
    nm, kn = pl.col(c_norm), pl.col(c_known)

    # ---- 5: facts ---------------------------------------------------------------
    seq_digit = nm.str.slice(16, 1).cast(pl.Int8, strict=False)
    lf = lf.with_columns(
        pl.when((kn >= 14) & (st != "bad_date")).then(b17).alias(f"{prefix}_birth"),
        pl.when((kn >= 17) & seq_digit.is_not_null())
        .then(pl.when(seq_digit % 2 == 1).then(pl.lit("男")).otherwise(pl.lit("女")))
        .alias(f"{prefix}_gender"),
        pl.when(kn >= 6).then(nm.str.slice(0, 6)).alias(f"{prefix}_region"),
    )
    out_cols = [c_norm, c_status, c_known, f"{prefix}_birth", f"{prefix}_gender", f"{prefix}_region"]
    return lf.select(*keep, _RAW, _KIND, *out_cols).collect()


# ----------------------------------------------------------------- matcher helpers
def _as_expr(x: pl.Expr | str) -> pl.Expr:
    return pl.col(x) if isinstance(x, str) else x


def _diff_mask(a: pl.Expr, b: pl.Expr, width: int) -> pl.Expr:
    """Int64 bit mask: bit i set where a[i] != b[i] (i < width); assumes equal lengths."""
    return pl.sum_horizontal(
        [
            (a.str.slice(i, 1) != b.str.slice(i, 1)).fill_null(False).cast(pl.Int64) * (1 << i)
            for i in range(width)
        ]
    )


def _mask_to_positions(m: pl.Series) -> pl.Series:
    # Python runs over the distinct masks only (few: most pairs differ in 0-3 places)
    u = m.drop_nulls().unique()
    lut = pl.DataFrame(
        {"m": u, "pos": [[i for i in range(x.bit_length()) if (x >> i) & 1] for x in u.to_list()]},
        schema={"m": m.dtype, "pos": pl.List(pl.Int8)},
    )
    return m.to_frame("m").join(lut, on="m", how="left", maintain_order="left")["pos"]


def digit_diff_positions(a: pl.Expr | str, b: pl.Expr | str, width: int = 18) -> pl.Expr:
    """List[Int8] of the 0-based positions where two equal-length strings differ
    (an empty list when equal); null when either is null, the lengths differ, or the
    strings are longer than `width` (18: ID numbers)."""
    a, b = _as_expr(a), _as_expr(b)
    la = a.str.len_chars()
    same = (la == b.str.len_chars()) & (la <= width)
    mask = pl.when(same).then(_diff_mask(a, b, width))
    return mask.map_batches(_mask_to_positions, return_dtype=pl.List(pl.Int8), is_elementwise=True)


def _swap_batch(width: int):
    def fn(st: pl.Series) -> pl.Series:
        a, b = pl.col("a"), pl.col("b")
        df = st.struct.unnest()
        df.columns = ["a", "b"]
        la = a.str.len_chars()
        df = df.with_columns(
            same=(la == b.str.len_chars()) & (la <= width),
            mask=_diff_mask(a, b, width),
        )
        m = pl.col("mask")
        df = df.with_columns(low=m & (-m))
        df = df.with_columns(
            p0=pl.min_horizontal(
                [pl.when(pl.col("low") == (1 << i)).then(pl.lit(i, dtype=pl.Int64)) for i in range(width)]
            )
        )
        p0 = pl.col("p0")
        res = (
            pl.col("same")
            & (m == 3 * pl.col("low"))
            & (a.str.slice(p0, 1) == b.str.slice(p0 + 1, 1))
            & (a.str.slice(p0 + 1, 1) == b.str.slice(p0, 1))
        )
        out = df.select(
            pl.when(a.is_null() | b.is_null()).then(pl.lit(None, dtype=pl.Boolean))
            .otherwise(res.fill_null(False))
            .alias(st.name)
        )
        return out.to_series()

    return fn


def is_adjacent_swap(a: pl.Expr | str, b: pl.Expr | str, width: int = 18) -> pl.Expr:
    """True when b is a with exactly two adjacent, different characters swapped
    (false when equal or lengths differ; null when either side is null).
    Strings longer than `width` give false."""
    a, b = _as_expr(a), _as_expr(b)
    return pl.struct(a.alias("a"), b.alias("b")).map_batches(
        _swap_batch(width), return_dtype=pl.Boolean, is_elementwise=True
    )
