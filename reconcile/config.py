"""Settings and paths: configuration is data, read once, validated, passed as one object."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .comparisons import COMPARISONS, Level
from .errors import ConfigError
from .places import NO_ALIASES, PlaceAliases, parse_place_aliases
from .vocabulary import DECISIONS

__all__ = [
    "PACKAGE_CONFIG",
    "PROJECT_ROOT",
    "DATA_DIR",
    "DEFAULT_DB",
    "DEFAULT_REPORTS",
    "SAMPLE_DIR",
    "COMPARISONS",
    "Level",
    "MatchSettings",
    "Settings",
    "load_settings",
    "CheckSettings",
    "StoreSettings",
    "NotifySettings",
    "load_notify",
    "ReviewSettings",
    "NoticeSettings",
    "load_policies",
]

PACKAGE_CONFIG = Path(__file__).parent / "config"
PROJECT_ROOT = Path(os.environ.get("RECON_HOME", Path(__file__).resolve().parent.parent))
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DB = DATA_DIR / "recon.duckdb"
DEFAULT_REPORTS = DATA_DIR / "reports"
SAMPLE_DIR = DATA_DIR / "sample"

@dataclass(frozen=True)
class MatchSettings:
    matched: float
    review: float
    margin_bits: float
    prior_bits: float
    max_candidates: int
    min_known_prefix: int
    # per field and level name: the declared level (`comparisons.COMPARISONS`) with its
    # starting m and u from settings.toml
    levels: Mapping[str, Mapping[str, Level]]
    # Estimation (see `reconcile.model`): u from random roster x system pairs, drawn
    # `u_batch_pairs` at a time until every level was seen `u_min_seen` times or
    # `u_max_pairs` were drawn; m by EM sessions (at most `em_iterations` each, until no m
    # moves by more than `em_tolerance`), the configured m counting as `em_prior_pairs` pairs;
    # the configured values as they are below `em_min_pairs` candidate pairs or with em off;
    # a session with fewer than `em_session_min_pairs` pairs estimates nothing.
    em: bool = True
    em_iterations: int = 100
    em_tolerance: float = 1e-5
    em_prior_pairs: float = 10.0
    em_min_pairs: int = 500
    em_session_min_pairs: int = 100
    u_min_seen: int = 50
    u_max_pairs: int = 1_000_000
    u_batch_pairs: int = 500_000
    seed: int = 20240901
    # term-frequency adjustment of the `tf` levels is capped at +/- this many bits
    tf_cap_bits: float = 6.0

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled by value (a second process, a Dask worker): each level as its field, name,
        m and u, declared again from ``comparisons.COMPARISONS`` on the other side (its
        condition is code, which pickle cannot carry)."""
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "levels"}
        levels = {c: {n: (lv.m, lv.u) for n, lv in by_name.items()} for c, by_name in self.levels.items()}
        return _match_settings_again, (plain, levels)

    def bits(self, comparison: str, level: str) -> float:
        lv = self.levels[comparison][level]
        return math.log2(lv.m / lv.u)

    @property
    def matched_bits(self) -> float:
        return math.log2(self.matched / (1 - self.matched))

    @property
    def review_bits(self) -> float:
        return math.log2(self.review / (1 - self.review))


def _match_settings_again(plain: dict[str, Any], levels: dict[str, dict[str, tuple[float, float]]]) -> MatchSettings:
    declared = {c: MappingProxyType({n: COMPARISONS[c].level(n).with_mu(m, u) for n, (m, u) in by_name.items()})
                for c, by_name in levels.items()}
    return MatchSettings(levels=declared, **plain)


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds of the policy checks (checks.toml)."""

    export_min_households: int = 5
    export_min_students: int = 1
    export_drop_ratio: float = 0.5
    entry_age: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(
        {"学前": 3, "小学": 6, "初中": 12, "高中": 15, "中职": 15, "本科": 18, "大专": 18}))
    age_early: int = 1
    age_late: int = 2
    compulsory_ages: tuple[int, int] = (6, 15)
    student_ages: tuple[int, int] = (3, 22)
    # Stages whose missed children are reported although no roster covers them tonight.
    missed_stages: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NoticeSettings:
    """The public notice and the clerks' workbooks (notice.toml): the notice's length in working
    days, the calendar (holidays, make-up working days), where to object, where to return."""

    working_days: int = 5
    office: str = "县学生资助管理中心"
    phone: str = ""
    holidays: frozenset[Any] = frozenset()  # datetime.date
    workdays: frozenset[Any] = frozenset()  # make-up working days (调休), datetime.date
    return_to: str = "县学生资助管理中心"
    return_within_days: int = 5


@dataclass(frozen=True)
class StoreSettings:
    """How long the store keeps what (store.toml [retention])."""

    records_nights: int = 30  # records and row_problems: the newest N nights with a succeeded run
    history_days: int = 1095  # discrepancies, matches, item_refs, runs, reviews, ...: three years


@dataclass(frozen=True)
class NotifySettings:
    """Whom a failed or missed night is told (notify.toml); nothing is sent when both are unset."""

    webhook_url: str | None = None
    command: tuple[str, ...] = ()
    timeout_s: float = 20.0


@dataclass(frozen=True)
class ReviewSettings:
    """How clerks' own words in 核实结论 are read (review.toml): ``words`` maps a phrase to a
    decision code, ``ambiguous`` phrases are refused with the list to choose from."""

    words: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ambiguous: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Settings:
    header_aliases: Mapping[str, Mapping[str, tuple[str, ...]]]
    codes: Mapping[str, Mapping[str, str]]
    qualifying_poverty: frozenset[str]
    qualifying_dibao: frozenset[str]
    match: MatchSettings
    sources: tuple[Path, ...] = field(default=())
    policies: tuple[Any, ...] = field(default=())  # reconcile.policy.Policy, one per county and school year
    checks: CheckSettings = field(default_factory=CheckSettings)
    places: PlaceAliases = NO_ALIASES  # place_aliases.toml: spellings of one town or village
    store: StoreSettings = field(default_factory=StoreSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)
    notice: NoticeSettings = field(default_factory=NoticeSettings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _levels(raw: Mapping[str, Any]) -> dict[str, Mapping[str, Level]]:
    """Each declared level with its m and u from [match.levels.<field>]: every level the
    comparison declares, and no other."""
    where = "settings.toml"
    tables = raw.get("levels", {})
    unknown_fields = set(tables) - set(COMPARISONS)
    if unknown_fields:
        raise ConfigError(f"{where}: match.levels has unknown fields {sorted(unknown_fields)}")
    levels: dict[str, Mapping[str, Level]] = {}
    for name, comparison in COMPARISONS.items():
        table = tables.get(name)
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: missing table [match.levels.{name}]")
        unknown = set(table) - set(comparison.names)
        if unknown:
            raise ConfigError(f"{where}: match.levels.{name} has unknown levels {sorted(unknown)}")
        parsed: dict[str, Level] = {}
        for level in comparison.names:
            key = f"match.levels.{name}.{level}"
            if level not in table:
                raise ConfigError(f"{where}: missing {key} = [m, u]")
            try:
                m, u = (float(x) for x in table[level])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {key} must be [m, u] ({exc})") from exc
            if not (0 < m <= 1 and 0 < u <= 1):
                raise ConfigError(f"{where}: {key} needs 0 < m, u <= 1")
            parsed[level] = comparison.level(level).with_mu(m, u)
        levels[name] = MappingProxyType(parsed)
    return levels


def _match_settings(raw: Mapping[str, Any], where: str) -> MatchSettings:
    levels = _levels(raw)
    d = MatchSettings(0.5, 0.5, 0.0, 0.0, 0, 0, levels)
    try:
        out = MatchSettings(
            matched=float(raw["matched"]),
            review=float(raw["review"]),
            margin_bits=float(raw["margin_bits"]),
            prior_bits=float(raw["prior_bits"]),
            max_candidates=int(raw["max_candidates"]),
            min_known_prefix=int(raw["min_known_prefix"]),
            levels=MappingProxyType(levels),
            **{k: type(getattr(d, k))(raw.get(k, getattr(d, k))) for k in (
                "em", "em_iterations", "em_tolerance", "em_prior_pairs", "em_min_pairs", "em_session_min_pairs", "u_min_seen",
                "u_max_pairs", "u_batch_pairs", "seed", "tf_cap_bits")},
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: missing setting match.{exc.args[0]}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: bad value in [match] ({exc})") from exc
    if not 0 < out.review <= out.matched < 1:
        raise ConfigError(f"{where}: need 0 < match.review <= match.matched < 1")
    if out.max_candidates < 1 or out.u_batch_pairs < 1 or out.u_max_pairs < out.u_batch_pairs:
        raise ConfigError(f"{where}: need match.max_candidates >= 1 and match.u_max_pairs >= match.u_batch_pairs >= 1")
    return out


def _check_settings(raw: Mapping[str, Any]) -> CheckSettings:
    where = "checks.toml"
    try:
        exp, age, missed = raw.get("export", {}), raw.get("age", {}), raw.get("missed", {})
        d = CheckSettings()
        entry = {str(k): int(v) for k, v in age.get("entry", d.entry_age).items()}
        out = CheckSettings(
            export_min_households=int(exp.get("min_households", d.export_min_households)),
            export_min_students=int(exp.get("min_students", d.export_min_students)),
            export_drop_ratio=float(exp.get("drop_ratio", d.export_drop_ratio)),
            entry_age=MappingProxyType(entry),
            age_early=int(age.get("early", d.age_early)),
            age_late=int(age.get("late", d.age_late)),
            compulsory_ages=tuple(int(x) for x in missed.get("compulsory", d.compulsory_ages)),  # type: ignore[arg-type]
            student_ages=tuple(int(x) for x in missed.get("student", d.student_ages)),  # type: ignore[arg-type]
            missed_stages=frozenset(str(x) for x in missed.get("stages", ())),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: bad value ({exc})") from exc
    if not 0 < out.export_drop_ratio <= 1:
        raise ConfigError(f"{where}: export.drop_ratio must be in (0, 1]")
    for key, pair in (("missed.compulsory", out.compulsory_ages), ("missed.student", out.student_ages)):
        if len(pair) != 2 or pair[0] > pair[1]:
            raise ConfigError(f"{where}: {key} must be [youngest, oldest]")
    return out


def _store_settings(raw: Mapping[str, Any]) -> StoreSettings:
    where = "store.toml"
    ret = raw.get("retention", {})
    unknown = sorted(set(ret) - {"records_nights", "history_days"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys retention.{unknown[0]}")
    d = StoreSettings()
    out: dict[str, int] = {}
    for key in ("records_nights", "history_days"):
        value = ret.get(key, getattr(d, key))
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: retention.{key} must be a whole number of at least 1")
        out[key] = value
    if out["history_days"] < out["records_nights"]:
        raise ConfigError(f"{where}: retention.history_days must be at least retention.records_nights")
    return StoreSettings(**out)


def _notify_settings(raw: Mapping[str, Any]) -> NotifySettings:
    where = "notify.toml"
    unknown = sorted(set(raw) - {"webhook_url", "command", "timeout_s"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]}")
    url = raw.get("webhook_url") or None
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise ConfigError(f"{where}: webhook_url must be an http:// or https:// address")
    command = raw.get("command", [])
    if isinstance(command, str) or not all(isinstance(c, str) for c in command):
        raise ConfigError(f"{where}: command must be a list of strings, e.g. [\"/usr/local/bin/tell\", \"--to\", \"x\"]")
    try:
        timeout = float(raw.get("timeout_s", 20.0))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: timeout_s must be a number of seconds") from None
    return NotifySettings(webhook_url=url, command=tuple(command), timeout_s=timeout)


def _config_dirs(config_dir: Path | None) -> list[Path]:
    return [PACKAGE_CONFIG] + ([Path(config_dir)] if config_dir is not None else [])


def _merged(dirs: list[Path], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dirs:
        if (d / name).exists():
            out = _merge(out, _read_toml(d / name))
    return out


def load_notify(config_dir: Path | None = None) -> NotifySettings:
    """notify.toml alone: the failure hook reads it even when the rest of a config is broken."""
    return _notify_settings(_merged(_config_dirs(config_dir), "notify.toml"))


def _review_settings(raw: Mapping[str, Any]) -> ReviewSettings:
    where = "review.toml"
    words: dict[str, str] = {}
    table = raw.get("decisions", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [decisions] must be a table")
    for label, phrases in table.items():
        if label == "ambiguous":
            continue
        if label not in DECISIONS:
            raise ConfigError(f"{where}: decisions.{label}: not one of {' / '.join(DECISIONS)}")
        if not isinstance(phrases, list) or not all(isinstance(x, str) and x.strip() for x in phrases):
            raise ConfigError(f"{where}: decisions.{label} must be a list of words")
        for phrase in phrases:
            if words.get(phrase, DECISIONS[label]) != DECISIONS[label]:
                raise ConfigError(f"{where}: decisions.{label}: 「{phrase}」 is listed under two decisions")
            words[phrase] = DECISIONS[label]
    ambiguous = table.get("ambiguous", [])
    if not isinstance(ambiguous, list) or not all(isinstance(x, str) for x in ambiguous):
        raise ConfigError(f"{where}: decisions.ambiguous must be a list of words")
    both = sorted(set(ambiguous) & set(words))
    if both:
        raise ConfigError(f"{where}: decisions.ambiguous: {both} also listed under a decision")
    return ReviewSettings(words=MappingProxyType(words), ambiguous=frozenset(ambiguous))
def _notice_settings(raw: Mapping[str, Any]) -> NoticeSettings:
    where = "notice.toml"
    d = NoticeSettings()
    notice, cal, book = raw.get("notice", {}), raw.get("calendar", {}), raw.get("workbook", {})
    try:
        days = {key: frozenset(cal.get(key, ())) for key in ("holidays", "workdays")}
        for key, values in days.items():
            bad = [v for v in values if not isinstance(v, date)]
            if bad:
                raise ConfigError(f"{where}: calendar.{key} must hold dates (2025-10-01), not {bad[0]!r}")
        out = NoticeSettings(
            working_days=int(notice.get("working_days", d.working_days)),
            office=str(notice.get("office", d.office)),
            phone=str(notice.get("phone", d.phone)),
            holidays=days["holidays"],
            workdays=days["workdays"],
            return_to=str(book.get("return_to", d.return_to)),
            return_within_days=int(book.get("return_within_days", d.return_within_days)),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: bad value ({exc})") from exc
    if out.working_days < 5:
        raise ConfigError(f"{where}: notice.working_days must be at least 5 (公示不少于5个工作日)")
    if out.return_within_days < 1:
        raise ConfigError(f"{where}: workbook.return_within_days must be at least 1")
    return out


def load_policies(dirs: list[Path]) -> tuple[tuple[Any, ...], list[Path]]:
    """Policy files from each dir's policy/ folder; a later dir's file for the same county and
    school year replaces an earlier one. A wrong file raises ConfigError naming file and key."""
    from .policy import PolicyError, parse_policy

    chosen: dict[tuple[str, int], Any] = {}
    used: list[Path] = []
    for d in dirs:
        folder = d / "policy"
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                pol = parse_policy(_read_toml(path), source=path.name)
            except PolicyError as exc:
                raise ConfigError(str(exc)) from exc
            chosen[(pol.county, pol.school_year)] = pol
            used.append(path)
    return tuple(chosen.values()), used


def load_settings(config_dir: Path | None = None) -> Settings:
    """Packaged defaults, extended or overridden by the files found in `config_dir`."""
    from .ingest import load_header_aliases  # ingest owns the alias format

    if config_dir is not None and not Path(config_dir).is_dir():
        raise ConfigError(f"config folder {config_dir} does not exist")
    dirs = [PACKAGE_CONFIG] + ([Path(config_dir)] if config_dir is not None else [])
    alias_files = [d / "header_aliases.toml" for d in dirs if (d / "header_aliases.toml").exists()]
    raw_settings: dict[str, Any] = {}
    raw_codes: dict[str, Any] = {}
    raw_checks: dict[str, Any] = {}
    raw_review: dict[str, Any] = {}
    raw_notice: dict[str, Any] = {}
    used: list[Path] = list(alias_files)
    for d in dirs:
        for name, target in (("settings.toml", raw_settings), ("codes.toml", raw_codes), ("checks.toml", raw_checks),
                             ("review.toml", raw_review), ("notice.toml", raw_notice)):
            path = d / name
            if path.exists():
                merged = _merge(target, _read_toml(path))
                target.clear()
                target.update(merged)
                used.append(path)
    eligibility = raw_codes.pop("eligibility", {})
    codes: dict[str, Mapping[str, str]] = {}
    for table, mapping in raw_codes.items():
        if not isinstance(mapping, Mapping) or not all(isinstance(v, str) for v in mapping.values()):
            raise ConfigError(f"codes.toml: [{table}] must map strings to strings")
        codes[table] = MappingProxyType({str(k).strip(): v for k, v in mapping.items()})
    places = NO_ALIASES
    for d in dirs:
        path = d / "place_aliases.toml"
        if path.exists():
            places = parse_place_aliases(_read_toml(path), str(path.name if d == PACKAGE_CONFIG else path), places)
            used.append(path)
    where = ", ".join(p.name for p in used)
    policies, policy_files = load_policies(dirs)
    return Settings(
        header_aliases=load_header_aliases(alias_files),
        codes=MappingProxyType(codes),
        qualifying_poverty=frozenset(eligibility.get("poverty_status", ())),
        qualifying_dibao=frozenset(eligibility.get("dibao_status", ())),
        match=_match_settings(raw_settings.get("match", {}), where),
        sources=tuple(used + policy_files),
        policies=policies,
        checks=_check_settings(raw_checks),
        places=places,
        store=_store_settings(_merged(dirs, "store.toml")),
        notify=_notify_settings(_merged(dirs, "notify.toml")),
        review=_review_settings(raw_review),
        notice=_notice_settings(raw_notice),
    )
