"""How a clerk mistypes a name, from sources that are not the matcher's (``confusions``).

``typo_name`` returns the new name and the error class (an entry of ``NAME_KINDS``), or the
name unchanged and "" when no class applies.
"""

from __future__ import annotations

from .confusions import accent_variants, has_traditional, homophones, observed_confusions, reading, traditional
from .draws import Rng
from .name_pool import NEUTRAL, RARE

__all__ = ["NAME_KINDS", "typo_name", "replace_rare"]

NAME_KINDS: tuple[str, ...] = (
    "homophone",    # same reading, another character (the generator's readings table)
    "accent",       # a Hunan accent's near-homophone: n/l, z/zh, c/ch, s/sh, f/h, an/ang, en/eng, in/ing
    "confusion",    # a confusion real writers made (SIGHAN 2015)
    "lookalike",    # a character of similar shape (the generator's own pairs)
    "traditional",  # traditional forms (the generator's own table)
    "transpose",    # two given-name characters swapped
    "given_only",   # the surname left out
    "rare_q", "rare_pinyin", "rare_common",  # a rare character typed as ?, as its reading, as a common one
    "space", "dot", "drop", "add",
)

# Characters of similar shape (the generator's own pairs, not the matcher's stroke tables).
LOOKALIKE: dict[str, str] = {
    "己": "已", "已": "己", "末": "未", "未": "末", "士": "土", "土": "士", "天": "夭", "王": "玉",
    "玉": "王", "日": "曰", "人": "入", "侯": "候", "戊": "戌", "贝": "见", "栗": "粟", "杨": "扬",
    "晴": "睛", "凤": "风", "萍": "苹", "博": "搏", "辉": "晖", "琪": "棋", "婷": "亭", "斌": "赋",
    "淼": "森", "喆": "哲", "堃": "坤", "清": "请", "俊": "浚", "浩": "洁", "洁": "浩", "彤": "肜",
    "娟": "涓", "刚": "钢", "鹏": "朋", "明": "朋", "雪": "雷", "建": "健", "健": "建",
}
_DOT_VARIANTS = ("•", "・", "．", ".", "")


def _positions(name: str, ok: object) -> list[int]:
    return [i for i, ch in enumerate(name) if ch != "·" and ok(ch)]  # type: ignore[operator]


def typo_name(rng: Rng, name: str, sur_len: int, side: str) -> tuple[str, str]:
    """One name error as the roster (``side="roster"``) or a system types it."""
    roster = side == "roster"
    rare_pos = [i for i, ch in enumerate(name) if ch in RARE]
    given = len(name) - sur_len
    options: list[tuple[str, float]] = []
    if rare_pos:
        options += [("rare_q", 4.0), ("rare_pinyin", 2.0 if roster else 0.5), ("rare_common", 0.5 if roster else 2.0)]
    if "·" in name:
        options.append(("dot", 6.0))
    if _positions(name, homophones):
        options.append(("homophone", 6.0))
    if _positions(name, accent_variants):
        options.append(("accent", 5.0))
    if _positions(name, observed_confusions):
        options.append(("confusion", 5.0))
    if _positions(name, LOOKALIKE.__contains__):
        options.append(("lookalike", 3.0))
    if roster and has_traditional(name):
        options.append(("traditional", 2.5))
    if sur_len:
        options.append(("space", 3.0))
        if given >= 2:
            options.append(("drop", 1.5))
            if name[sur_len] != name[sur_len + 1]:
                options.append(("transpose", 1.5))
        if given >= 1:
            options.append(("given_only", 1.5 if roster else 0.3))
        options.append(("add", 1.0))
    if not options:
        return name, ""
    for _ in range(4):
        kind = rng.pick(options)
        new = _apply(rng, kind, name, sur_len, rare_pos)
        if new and new != name:
            return new, kind
    return name, ""


def _swap_one(rng: Rng, name: str, choices: object) -> str:
    pos = _positions(name, choices)
    i = rng.choice(pos)
    return name[:i] + rng.choice(choices(name[i])) + name[i + 1:]  # type: ignore[operator]


def replace_rare(rng: Rng, kind: str, name: str, rare_pos: list[int]) -> str:
    """A rare character typed as ?, as its reading, or as a common character of its reading."""
    i = rng.choice(rare_pos)
    if kind == "rare_q":
        rep = "?"
    elif kind == "rare_pinyin":
        rep = reading(name[i]) or "?"
    else:
        cands = homophones(name[i])
        if not cands:
            return name
        rep = rng.choice(cands)
    return name[:i] + rep + name[i + 1:]


def _apply(rng: Rng, kind: str, name: str, sur_len: int, rare_pos: list[int]) -> str:
    if kind in ("rare_q", "rare_pinyin", "rare_common"):
        return replace_rare(rng, kind, name, rare_pos)
    if kind == "dot":
        return name.replace("·", rng.choice(_DOT_VARIANTS))
    if kind == "homophone":
        return _swap_one(rng, name, homophones)
    if kind == "accent":
        return _swap_one(rng, name, accent_variants)
    if kind == "confusion":
        return _swap_one(rng, name, observed_confusions)
    if kind == "lookalike":
        return _swap_one(rng, name, lambda ch: (LOOKALIKE[ch],) if ch in LOOKALIKE else ())
    if kind == "traditional":
        return traditional(name)
    if kind == "transpose":
        return name[:sur_len] + name[sur_len + 1] + name[sur_len] + name[sur_len + 2:]
    if kind == "given_only":
        return name[sur_len:]
    if kind == "space":
        sp = rng.choice((" ", " ", "　", "  "))
        return name[:sur_len] + sp + name[sur_len:]
    if kind == "drop":
        i = rng.randrange(sur_len, len(name))
        return name[:i] + name[i + 1:]
    if kind == "add":
        if rng.p(0.5):
            return name + name[-1]
        return name + rng.choice(NEUTRAL)
    raise AssertionError(kind)
