"""Person names: normalisation and pinyin keys, vectorised.

Python runs only over the DISTINCT CHARACTERS of a column (a few thousand at most); the
per-row work is polars string expressions (`str.normalize`, regex replaces, and an
Aho-Corasick `str.replace_many` through a character map).

normalize_names:
  NFKC (full-width letters/digits/punctuation -> ASCII) -> drop all whitespace and
  zero-width characters -> wildcard placeholders ? ？ * ＊ □ ■ -> '?' -> every middle-dot
  variant -> one '·' (runs collapsed, none leading/trailing) -> traditional -> simplified,
  character by character (OpenCC 't2s' applied to each distinct character once; no phrase
  conversion) -> empty -> null. Rare characters (䶮, 𬱖) are kept as they are; '口' and '〇'
  are real characters, not wildcards.

pinyin_keys:
  toneless lower-case pinyin, no separators: 王丽 -> 'wangli'. The first character (or the
  first two, for a compound surname from COMPOUND_SURNAMES) is read as a surname
  (单 shan, 曾 zeng, 解 xie, ...: SURNAME_READINGS), the rest with pypinyin's default
  reading of each single character. '·' and whitespace are dropped, '?' stays '?', other
  non-Han characters are lower-cased with accents removed ('ü' -> 'v', as pypinyin writes
  it). A Han character pypinyin has no reading for stays as itself.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import polars as pl

__all__ = [
    "DOT",
    "fuzzy_pinyin",
    "WILDCARD",
    "SURNAME_READINGS",
    "COMPOUND_SURNAMES",
    "normalize_names",
    "normalize_name",
    "pinyin_keys",
    "pinyin_key",
    "name_forms",
    "is_lookalike",
    "lookalike_chars",
    "in_charset",
]

DOT = "·"  # U+00B7, the one name dot kept
WILDCARD = "?"

# Middle-dot variants (after NFKC: U+FF0E '．' is already '.', U+FF65 '･' is already '・').
_DOT_CHARS = (
    "\u00b7"  # · middle dot
    "\u0387"  # · greek ano teleia
    "\u2022"  # • bullet
    "\u2027"  # ‧ hyphenation point
    "\u2219"  # ∙ bullet operator
    "\u22c5"  # ⋅ dot operator
    "\u30fb"  # ・ katakana middle dot (gb2312 decoding of ·)
    "\uff65"  # ･ halfwidth katakana middle dot
    "\u2e31"  # ⸱ word separator middle dot
    "\u16eb"  # ᛫ runic single punctuation
    "\uff0e"  # ． fullwidth full stop
    "."
)
_DOT_RE = "[" + "".join(f"\\x{{{ord(c):04X}}}" for c in _DOT_CHARS) + "]+"
_SPACE_RE = r"[\s\x{200B}-\x{200D}\x{2060}\x{FEFF}\x{00AD}]+"
# placeholders for characters that could not be typed/encoded (after NFKC ？->? ＊->*)
_WILD_RE = r"[?*□■\x{FF1F}\x{FF0A}]"

# Surname readings where pypinyin's default single-character reading is wrong.
SURNAME_READINGS: dict[str, str] = {
    "单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "区": "ou", "朴": "piao",
    "查": "zha", "盖": "ge", "乐": "yue", "缪": "miao", "覃": "qin", "翟": "zhai",
    "召": "shao", "种": "chong", "秘": "bi", "员": "yun", "折": "she", "能": "nai",
    "繁": "po", "句": "gou", "阚": "kan", "隗": "wei", "黑": "he", "薄": "bo",
    "炅": "gui", "祭": "zhai", "角": "jue", "卜": "bu", "都": "du", "藏": "zang",
    "长": "chang", "澹": "tan", "洗": "xian", "乜": "nie", "佴": "nai", "逄": "pang",
    "重": "chong", "蕃": "pi", "尉": "wei", "贲": "ben", "眭": "sui", "谌": "chen",
}
# Compound surnames, read as a whole (checked before the single-character table).
COMPOUND_SURNAMES: dict[str, str] = {
    "尉迟": "yuchi", "万俟": "moqi", "长孙": "zhangsun", "澹台": "tantai",
    "欧阳": "ouyang", "令狐": "linghu", "上官": "shangguan", "诸葛": "zhuge",
    "皇甫": "huangfu", "夏侯": "xiahou", "慕容": "murong", "宇文": "yuwen",
    "司马": "sima", "司徒": "situ", "司空": "sikong", "东方": "dongfang",
    "公孙": "gongsun", "轩辕": "xuanyuan", "端木": "duanmu", "呼延": "huyan",
    "乐正": "yuezheng", "钟离": "zhongli", "申屠": "shentu", "闻人": "wenren",
    "南宫": "nangong", "西门": "ximen", "淳于": "chunyu", "赫连": "helian",
}

# Default readings pypinyin gets wrong for names anywhere in the name.
_CHAR_READINGS: dict[str, str] = {"卜": "bu"}


# ------------------------------------------------------------ per-character maps
@lru_cache(maxsize=1)
def _opencc():
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=1)
def _opencc_s2t():
    from opencc import OpenCC

    return OpenCC("s2t")


@lru_cache(maxsize=None)
def _t2s_char(c: str) -> str:
    """Simplified form of one character, followed to a fixpoint (薴 -> 苧 -> 苎); a
    conversion that does not give exactly one character is ignored."""
    cc = _opencc()
    seen = {c}
    cur = c
    for _ in range(4):
        nxt = cc.convert(cur)
        if len(nxt) != 1 or nxt in seen:
            break
        seen.add(nxt)
        cur = nxt
    return cur


@lru_cache(maxsize=None)
def _py_char(c: str) -> str:
    """Toneless pinyin of one character (default reading), or the character itself,
    lower-cased and without accents, when it is not Han."""
    if c.isspace() or c in _DOT_CHARS:
        return ""
    if c in "?？*＊□■":
        return WILDCARD
    from pypinyin import Style, lazy_pinyin

    if c in _CHAR_READINGS:
        return _CHAR_READINGS[c]
    p = lazy_pinyin(c, style=Style.NORMAL, errors="default")
    p0 = p[0] if p else c
    if p0 == c and _is_han(c):
        # a simplified form pypinyin has no reading for (閞 -> 𫔰): read the traditional one
        trad = _opencc_s2t().convert(c)
        if len(trad) == 1 and trad != c:
            p = lazy_pinyin(trad, style=Style.NORMAL, errors="default")
            p0 = p[0] if p and p[0] != trad else c
    if p0 != c and p0.isascii():
        return p0.lower()
    # not Han (or Han without a reading): lower-case, strip accents, ü -> v
    low = c.lower()
    if low == "ü":
        return "v"
    base = "".join(ch for ch in unicodedata.normalize("NFD", low) if not unicodedata.combining(ch))
    return base if base else low


def _is_han(c: str) -> bool:
    return unicodedata.name(c, "").startswith("CJK ")


def in_charset(c: str, codec: str) -> bool:
    """Whether old systems in `codec` (gb2312, gbk) can hold `c`: outside it a clerk types
    a placeholder (口, ?) or an export drops the character."""
    try:
        c.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _distinct_chars(s: pl.Series) -> list[str]:
    chars = s.drop_nulls().unique().str.split("").explode().drop_nulls().unique()
    return [c for c in chars.to_list() if c]


def _char_map(chars: list[str], fn) -> dict[str, str]:
    out = {}
    for c in chars:
        v = fn(c)
        if v != c:
            out[c] = v
    return out


def _apply_char_map(e: pl.Expr, mapping: dict[str, str]) -> pl.Expr:
    if not mapping:
        return e
    return e.str.replace_many(list(mapping.keys()), list(mapping.values()))


# -------------------------------------------------------------------- normalise
def _pre_expr(e: pl.Expr) -> pl.Expr:
    """Everything but the traditional->simplified step."""
    e = (
        e.str.normalize("NFKC")
        .str.replace_all(_SPACE_RE, "")
        .str.normalize("NFKC")  # a combining mark that a removed space kept apart
        .str.replace_all(_WILD_RE, WILDCARD)
        .str.replace_all(_DOT_RE, DOT)
        .str.strip_chars(DOT)
    )
    return e


def normalize_names(s: pl.Series) -> pl.Series:
    """Normalised names (String, same length and name as `s`; null for null/empty)."""
    s = s.cast(pl.String)
    name = s.name
    pre = s.to_frame("n").select(_pre_expr(pl.col("n"))).to_series()
    mapping = _char_map(_distinct_chars(pre), _t2s_char)
    out = pre.to_frame("n").select(
        pl.when(pl.col("n").str.len_bytes() > 0).then(_apply_char_map(pl.col("n"), mapping))
    ).to_series()
    return out.alias(name)


def normalize_name(s: str | None) -> str | None:
    """Scalar form of `normalize_names` (same rules)."""
    return normalize_names(pl.Series("n", [s], dtype=pl.String))[0]


# ------------------------------------------------------------------------ pinyin
# 模糊音, as Chinese input methods offer them: the sounds a southern or south-western accent
# does not tell apart (front/back nasals, retroflex/flat initials, n/l, f/h), folded in this
# order (nasals before n/l; h alone only once zh/ch/sh are gone).
_FUZZY = (("ng", "n"), ("zh", "z"), ("ch", "c"), ("sh", "s"), ("h", "f"), ("n", "l"))


def fuzzy_pinyin(key: pl.Expr) -> pl.Expr:
    """A `pinyin_keys` key with the accent pairs folded: 张林 zhanglin and 赞宁 zanning
    share one. Coarser than the key (the model learns how often strangers share it)."""
    for a, b in _FUZZY:
        key = key.str.replace_all(a, b, literal=True)
    return key


def pinyin_keys(s: pl.Series, *, normalized: bool = True) -> pl.Series:
    """Toneless lower-case pinyin keys (String, null for null/empty).

    Expects names from `normalize_names`; pass `normalized=False` to normalise first.
    """
    s = s.cast(pl.String)
    name = s.name
    if not normalized:
        s = normalize_names(s)
    chars = _distinct_chars(s)
    cmap = _char_map(chars, _py_char)
    # first character read as a surname
    smap = {c: SURNAME_READINGS.get(c, cmap.get(c, c)) for c in chars}
    smap = {k: v for k, v in smap.items() if k != v}

    n = pl.col("n")
    first2 = n.str.slice(0, 2)
    compound = first2.is_in(list(COMPOUND_SURNAMES.keys()))
    first1 = n.str.slice(0, 1)
    sur1 = first1.replace(smap) if smap else first1
    sur = pl.when(compound).then(first2.replace(COMPOUND_SURNAMES)).otherwise(sur1)
    rest = pl.when(compound).then(n.str.slice(2)).otherwise(n.str.slice(1))
    key = pl.concat_str([sur, _apply_char_map(rest, cmap)])
    out = s.to_frame("n").select(
        pl.when(key.str.len_bytes() > 0).then(key)
    ).to_series()
    return out.alias(name)


def pinyin_key(s: str | None, *, normalized: bool = False) -> str | None:
    """Scalar form of `pinyin_keys` (normalises first unless told it already is)."""
    return pinyin_keys(pl.Series("n", [s], dtype=pl.String), normalized=normalized)[0]


def name_forms(values: pl.Series) -> pl.DataFrame:
    """One row per distinct non-null spelling in `values`: ``value`` (as written), ``norm``
    (`normalize_names`), ``py`` (`pinyin_keys`) and ``fz`` (`fuzzy_pinyin`). A county's
    names repeat (a head on each member's row, common names): join this on the spelling
    instead of normalising every row."""
    value = values.cast(pl.String).drop_nulls().unique().alias("value")
    norm = normalize_names(value).alias("norm")
    py = pinyin_keys(norm).alias("py")
    return pl.DataFrame([value, norm, py]).with_columns(fuzzy_pinyin(pl.col("py")).alias("fz"))


# ------------------------------------------------------------------ look-alike characters
_DATA = __import__("pathlib").Path(__file__).parent / "data"


@lru_cache(maxsize=1)
def _same_stroke() -> dict[str, frozenset[str]]:
    """Shape-similar groups from pycorrector's same_stroke.txt (see data/NOTICE.md)."""
    groups: dict[str, set[str]] = {}
    with (_DATA / "same_stroke.txt").open(encoding="utf-8") as fh:
        for line in fh:
            chars = [c for c in line.split() if len(c) == 1]
            for c in chars:
                groups.setdefault(c, set()).update(x for x in chars if x != c)
    return {k: frozenset(v) for k, v in groups.items()}


@lru_cache(maxsize=1)
def _strokes() -> dict[str, str]:
    """Stroke sequence of each character, from pycorrector's stroke.txt."""
    out: dict[str, str] = {}
    with (_DATA / "stroke.txt").open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) == 2 and len(parts[0]) == 1:
                out[parts[0]] = parts[1]
    return out


@lru_cache(maxsize=65536)
def is_lookalike(a: str, b: str) -> bool:
    """Two different characters of similar shape: in one same_stroke group, or stroke
    sequences at most one stroke apart (己/已 identical, 王/玉 one stroke, 侯/候 one stroke)."""
    if a == b or len(a) != 1 or len(b) != 1:
        return False
    if b in _same_stroke().get(a, ()) or a in _same_stroke().get(b, ()):
        return True
    st = _strokes()
    sa, sb = st.get(a), st.get(b)
    if not sa or not sb or min(len(sa), len(sb)) < 2:
        return False
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(sa, sb, score_cutoff=1) <= 1


def lookalike_chars(a: pl.Series, b: pl.Series) -> pl.Series:
    """Element-wise `is_lookalike` (Python over the distinct pairs only; null -> False)."""
    df = pl.DataFrame({"a": a.cast(pl.String), "b": b.cast(pl.String)})
    u = df.drop_nulls().unique()
    lut = u.with_columns(
        pl.Series("ok", [is_lookalike(x, y) for x, y in u.iter_rows()], dtype=pl.Boolean)
    )
    return df.join(lut, on=["a", "b"], how="left", maintain_order="left")["ok"].fill_null(False)
