"""Settings and paths: configuration is data, read once, validated, passed as one object."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import ConfigError

__all__ = [
    "PACKAGE_CONFIG",
    "PROJECT_ROOT",
    "DATA_DIR",
    "DEFAULT_DB",
    "DEFAULT_REPORTS",
    "SAMPLE_DIR",
    "Level",
    "MatchSettings",
    "Settings",
    "load_settings",
    "CheckSettings",
    "StoreSettings",
    "NotifySettings",
    "load_notify",
    "load_policies",
]

PACKAGE_CONFIG = Path(__file__).parent / "config"
PROJECT_ROOT = Path(os.environ.get("RECON_HOME", Path(__file__).resolve().parent.parent))
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DB = DATA_DIR / "recon.duckdb"
DEFAULT_REPORTS = DATA_DIR / "reports"
SAMPLE_DIR = DATA_DIR / "sample"

# Each compared field and its levels, in the order they are tried.
COMPARISONS: dict[str, tuple[str, ...]] = {
    "id": ("exact", "one_digit", "swap", "two_digit", "prefix", "bad_else", "else"),
    "name": ("exact", "pinyin", "wildcard", "lookalike", "close", "else"),
    "birth": ("exact", "else"),
    "gender": ("agree", "disagree"),
    "head": ("exact", "pinyin", "else"),
    "place": ("village", "town", "else"),
}


@dataclass(frozen=True)
class Level:
    """One comparison level: m = P(level | same person), u = P(level | different persons)."""

    m: float
    u: float

    @property
    def bits(self) -> float:
        return math.log2(self.m / self.u)


@dataclass(frozen=True)
class MatchSettings:
    matched: float
    review: float
    margin_bits: float
    prior_bits: float
    max_block: int
    min_known_prefix: int
    levels: Mapping[str, Mapping[str, Level]]
    # EM (Fellegi–Sunter) re-estimation of m, u and the prior on each run's candidate
    # pairs; the configured values are the starting point and a Dirichlet prior worth
    # `em_prior_pairs` pairs, and are used as they are below `em_min_pairs` pairs.
    em: bool = True
    em_iterations: int = 30
    em_prior_pairs: float = 200.0
    em_min_pairs: int = 500
    # term-frequency adjustment of the name `exact` level is capped at +/- this many bits
    tf_cap_bits: float = 6.0

    def bits(self, comparison: str, level: str) -> float:
        return self.levels[comparison][level].bits

    @property
    def matched_bits(self) -> float:
        return math.log2(self.matched / (1 - self.matched))

    @property
    def review_bits(self) -> float:
        return math.log2(self.review / (1 - self.review))


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
class Settings:
    header_aliases: Mapping[str, Mapping[str, tuple[str, ...]]]
    codes: Mapping[str, Mapping[str, str]]
    qualifying_poverty: frozenset[str]
    qualifying_dibao: frozenset[str]
    match: MatchSettings
    sources: tuple[Path, ...] = field(default=())
    policies: tuple[Any, ...] = field(default=())  # reconcile.policy.Policy, one per county and school year
    checks: CheckSettings = field(default_factory=CheckSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)


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


def _match_settings(raw: Mapping[str, Any], where: str) -> MatchSettings:
    try:
        levels: dict[str, Mapping[str, Level]] = {}
        for comparison, names in COMPARISONS.items():
            table = raw["levels"][comparison]
            unknown = set(table) - set(names)
            if unknown:
                raise ConfigError(f"{where}: match.levels.{comparison} has unknown levels {sorted(unknown)}")
            parsed: dict[str, Level] = {}
            for name in names:
                m, u = (float(x) for x in table[name])
                if not (0 < m <= 1 and 0 < u <= 1):
                    raise ConfigError(f"{where}: match.levels.{comparison}.{name} needs 0 < m, u <= 1")
                parsed[name] = Level(m, u)
            levels[comparison] = MappingProxyType(parsed)
        out = MatchSettings(
            matched=float(raw["matched"]),
            review=float(raw["review"]),
            margin_bits=float(raw["margin_bits"]),
            prior_bits=float(raw["prior_bits"]),
            max_block=int(raw["max_block"]),
            min_known_prefix=int(raw["min_known_prefix"]),
            levels=MappingProxyType(levels),
            em=bool(raw.get("em", True)),
            em_iterations=int(raw.get("em_iterations", 30)),
            em_prior_pairs=float(raw.get("em_prior_pairs", 200.0)),
            em_min_pairs=int(raw.get("em_min_pairs", 500)),
            tf_cap_bits=float(raw.get("tf_cap_bits", 6.0)),
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: missing setting match.{exc.args[0]}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: bad value in [match] ({exc})") from exc
    if not 0 < out.review <= out.matched < 1:
        raise ConfigError(f"{where}: need 0 < match.review <= match.matched < 1")
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
    used: list[Path] = list(alias_files)
    for d in dirs:
        for name, target in (("settings.toml", raw_settings), ("codes.toml", raw_codes), ("checks.toml", raw_checks)):
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
        store=_store_settings(_merged(dirs, "store.toml")),
        notify=_notify_settings(_merged(dirs, "notify.toml")),
    )
