"""Where the generator's name errors come from, independent of the matcher's knowledge.

* observed confusions: character pairs real writers confused (SIGHAN 2015, ``data/NOTICE.md``);
* same-reading homophones and Hunan-accent near-homophones (n/l, z/zh, c/ch, s/sh, f/h,
  an/ang, en/eng, in/ing) from the generator's own table of name characters by reading
  (``data/readings.tsv``): an accent variant always reads differently from the original;
* traditional forms from the generator's own small table (not OpenCC).

No pinyin library, no OpenCC, none of the matcher's shape tables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

__all__ = [
    "homophones",
    "accent_variants",
    "observed_confusions",
    "traditional",
    "has_traditional",
    "reading",
]

_DATA = Path(__file__).parent / "data"

# Readings of the rare name characters (those outside the readings table).
_RARE_READINGS: dict[str, str] = {
    "䶮": "yan", "龑": "yan", "𬱖": "di", "喆": "zhe", "堃": "kun", "犇": "ben", "淼": "miao",
    "燚": "yi", "赟": "yun", "玥": "yue", "珺": "jun", "彧": "yu", "翀": "chong", "昳": "die",
}

# Simplified -> traditional for common name characters (only those that differ).
_TRADITIONAL: dict[str, str] = dict(zip(
    "伟强军杰涛鹏辉刚龙飞华国泽铭凯诚庆东贵荣锦鸿丽静艳洁红兰颖悦诗瑶凤云张刘陈杨黄赵吴孙马罗郑"
    "谢许韩冯邓蒋叶苏吕卢钟谭陆贾韦邹闫贺顾龚万钱严欧阳诸单区鸣钧骏维玮卫炜为扬经韬烦号莹赢樱鹰"
    "晖挥汇会绘绣谦迁纤夹书树顺硕宁柠铃灵龄诺骆辽莲连怜梦聪丛从纯驰迟乐语钰宝贝毕宾滨鲍兴银贤娴"
    "欢焕环丰枫锋苍沧灿婵蝉畅长资贞峥铮庄壮则战钊",
    "偉強軍傑濤鵬輝剛龍飛華國澤銘凱誠慶東貴榮錦鴻麗靜艷潔紅蘭穎悅詩瑤鳳雲張劉陳楊黃趙吳孫馬羅鄭"
    "謝許韓馮鄧蔣葉蘇呂盧鍾譚陸賈韋鄒閆賀顧龔萬錢嚴歐陽諸單區鳴鈞駿維瑋衛煒為揚經韜煩號瑩贏櫻鷹"
    "暉揮匯會繪繡謙遷纖夾書樹順碩寧檸鈴靈齡諾駱遼蓮連憐夢聰叢從純馳遲樂語鈺寶貝畢賓濱鮑興銀賢嫻"
    "歡煥環豐楓鋒蒼滄燦嬋蟬暢長資貞崢錚莊壯則戰釗",
    strict=True,
))

# Initials and finals a Hunan speaker merges; each pair is tried both ways.
_INITIAL_PAIRS = (("n", "l"), ("zh", "z"), ("ch", "c"), ("sh", "s"), ("f", "h"))
_FINAL_PAIRS = (("ang", "an"), ("eng", "en"), ("ing", "in"))
# f/h before finals that change with it (fang ~ huang, fei ~ hui, feng ~ hong, ...)
_FH_EXTRA = (("fang", "huang"), ("fan", "huan"), ("fei", "hui"), ("fen", "hun"), ("feng", "hong"), ("fa", "hua"))


def _read_table(name: str) -> list[list[str]]:
    rows = []
    for line in (_DATA / name).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split("\t"))
    return rows


@lru_cache(maxsize=1)
def _readings() -> tuple[dict[str, str], dict[str, str]]:
    """(character -> reading, reading -> characters) of the readings table."""
    of: dict[str, str] = {}
    chars: dict[str, str] = {}
    for r, cs in _read_table("readings.tsv"):
        chars[r] = cs
        for c in cs:
            of[c] = r
    return of, chars


def reading(ch: str) -> str | None:
    """The generator's toneless reading of a character (None: not in its tables)."""
    return _readings()[0].get(ch) or _RARE_READINGS.get(ch)


def homophones(ch: str) -> tuple[str, ...]:
    """Other characters of the same reading in the table."""
    r = reading(ch)
    return tuple(c for c in _readings()[1].get(r or "", "") if c != ch)


def _accent_readings(r: str) -> list[str]:
    out: list[str] = []
    for a, b in _INITIAL_PAIRS:
        for x, y in ((a, b), (b, a)):
            # "zh" starts with "z": only swap z when it is not zh (and c/ch, s/sh alike)
            if r.startswith(x) and not (len(x) == 1 and r[:2] in ("zh", "ch", "sh")):
                out.append(y + r[len(x):])
    for a, b in _FINAL_PAIRS:
        if r.endswith(a):
            out.append(r[: -len(a)] + b)
        elif r.endswith(b):
            out.append(r[: -len(b)] + a)
    for a, b in _FH_EXTRA:
        if r == a:
            out.append(b)
        elif r == b:
            out.append(a)
    return [x for x in dict.fromkeys(out) if x != r]


@lru_cache(maxsize=None)
def accent_variants(ch: str) -> tuple[str, ...]:
    """Characters a Hunan accent confuses with ``ch``: always of a different reading."""
    r = reading(ch)
    if r is None:
        return ()
    chars = _readings()[1]
    return tuple(c for alt in _accent_readings(r) for c in chars.get(alt, ""))


@lru_cache(maxsize=1)
def _observed() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for correct, written, times in _read_table("sighan_confusions.tsv"):
        out.setdefault(correct, []).extend([written] * int(times))
    return {k: tuple(v) for k, v in out.items()}


def observed_confusions(ch: str) -> tuple[str, ...]:
    """What real writers wrote for ``ch`` (repeated as often as they did)."""
    return _observed().get(ch, ())


def has_traditional(name: str) -> bool:
    return any(c in _TRADITIONAL for c in name)


def traditional(name: str) -> str:
    return "".join(_TRADITIONAL.get(c, c) for c in name)
