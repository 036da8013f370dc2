"""Settings: packaged defaults load; a user folder overrides and extends; bad files are named."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from reconcile.config import load_settings
from reconcile.errors import ConfigError


def test_defaults_load() -> None:
    s = load_settings()
    assert 0 < s.match.review <= s.match.matched < 1
    assert s.codes["poverty_status"]["4"] == "已脱贫(不再享受政策)"
    assert "在保" in s.qualifying_dibao
    assert s.match.bits("id", "exact") > s.match.bits("id", "one_digit") > 0 > s.match.bits("id", "else")
    assert "学生姓名" in s.header_aliases["roster"]["name"]


def test_user_folder_overrides_and_extends(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("[match]\nmatched = 0.995\n", encoding="utf-8")
    (tmp_path / "codes.toml").write_text('[poverty_status]\n"9" = "返贫"\n', encoding="utf-8")
    (tmp_path / "header_aliases.toml").write_text('[roster]\nname = ["娃娃姓名"]\n', encoding="utf-8")
    s = load_settings(tmp_path)
    assert s.match.matched == 0.995
    assert s.match.review == load_settings().match.review
    assert s.codes["poverty_status"]["9"] == "返贫" and s.codes["poverty_status"]["0"] == "未脱贫"
    assert {"娃娃姓名", "学生姓名"} <= set(s.header_aliases["roster"]["name"])


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("settings.toml", "[match\n", "settings.toml"),
        ("settings.toml", "[match]\nmatched = 0.2\nreview = 0.5\n", "review"),
        ("settings.toml", "[match.levels.id]\nexact = [0.9, 0]\n", "exact"),
        ("settings.toml", "[match.levels.id]\nbogus = [0.9, 0.1]\n", "bogus"),
        ("settings.toml", "[match.levels.id]\nexact = 0.9\n", "match.levels.id.exact must be"),
        ("settings.toml", "[match.levels.nickname]\nexact = [0.9, 0.1]\n", "nickname"),
        ("settings.toml", "[match]\nmax_candidates = 0\n", "max_candidates"),
        ("notice.toml", "[notice]\nworking_days = 3\n", "notice.working_days"),
        ("notice.toml", "[calendar]\nholidays = [\"10月1日\"]\n", "calendar.holidays"),
        ("notice.toml", "[workbook]\nreturn_within_days = 0\n", "workbook.return_within_days"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, name: str, text: str, needle: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        load_settings(tmp_path)


def test_notice_calendar_from_a_user_file(tmp_path: Path) -> None:
    (tmp_path / "notice.toml").write_text('[notice]\nphone = "0743-1234567"\n[calendar]\nworkdays = [2025-10-11]\n',
                                          encoding="utf-8")
    ns = load_settings(tmp_path).notice
    assert ns.phone == "0743-1234567" and date(2025, 10, 11) in ns.workdays
    assert date(2025, 10, 1) in ns.holidays  # the packaged calendar's holidays stay


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope")
