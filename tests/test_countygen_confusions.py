"""The generator's error sources: accent near-homophones, same-reading homophones, observed
confusions, traditional forms (its own tables, none of the matcher's)."""

from __future__ import annotations

import pytest

from countygen.confusions import accent_variants, homophones, observed_confusions, reading, traditional


@pytest.mark.parametrize(
    ("ch", "variant", "why"),
    [
        ("兰", "南", "n/l"), ("宁", "玲", "n/l and in/ing"), ("张", "臧", "zh/z"), ("陈", "岑", "ch/c"),
        ("森", "深", "s/sh"), ("方", "黄", "f/h: fang/huang"), ("凤", "红", "f/h: feng/hong"),
        ("斌", "冰", "in/ing"), ("晨", "成", "en/eng"), ("林", "玲", "in/ing"), ("丹", "党", "an/ang"),
    ],
)
def test_accent_variants(ch: str, variant: str, why: str) -> None:
    assert variant in accent_variants(ch), why
    assert reading(variant) != reading(ch)


@pytest.mark.parametrize("ch", ["兰", "张", "陈", "静", "斌", "凤", "䶮"])
def test_accent_variants_never_share_the_reading(ch: str) -> None:
    assert all(reading(v) != reading(ch) for v in accent_variants(ch))
    assert all(reading(h) == reading(ch) and h != ch for h in homophones(ch))


@pytest.mark.parametrize(("name", "trad"), [("张伟", "張偉"), ("刘丽华", "劉麗華"), ("王芳", "王芳")])
def test_traditional(name: str, trad: str) -> None:
    assert traditional(name) == trad


@pytest.mark.parametrize(("ch", "written"), [("方", "放"), ("健", "建"), ("里", "理")])
def test_observed_confusions(ch: str, written: str) -> None:
    assert written in observed_confusions(ch)
