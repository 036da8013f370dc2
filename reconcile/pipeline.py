"""The pure chain: ingested sheets → records, matches, discrepancies and counts.

No file, clock or network here: the flow and the CLI do the I/O around it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable, Protocol

import polars as pl

from schemas import DiscrepancySchema, MatchSchema, RowProblemSchema
from schemas.policy import ExportProblemSchema, HouseholdChangeSchema

from .config import Settings
from .fields import FEW_VALUES, SOURCES, SYSTEMS
from .ingest import PROBLEM_SCHEMA, IngestResult
from . import review
from .match import MATCH_ONLY, SystemLinks, link_system
from .aside import link_recorded, matching_columns
from .model import PARAMETER_COLUMNS, parameters_frame
from .memory import as_categories, compact
from .names import name_forms
from .normalize import normalize_source, observed_names
from .notice import notice_rows
from .places import observed_places, resolve_places, with_place_names
from . import policy as pol
from .completeness import Previous, export_problems, household_changes
from .rules import RuleContext, find_discrepancies
from .crosscounty import Borrowed

__all__ = ["Results", "Linked", "normalize_all", "normalize_corrected", "match_all", "link_systems",
           "blocking_counts", "reconcile", "Aside", "MATCH_ASIDE_UP_TO", "judge", "summarise", "records_table",
           "stored_tables"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Results:
    records: dict[str, pl.DataFrame]
    problems: pl.DataFrame
    matches: pl.DataFrame
    discrepancies: pl.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    eligible: pl.DataFrame | None = None  # the 公示名单 rows (notice.notice_rows)
    export_problems: pl.DataFrame | None = None
    household_changes: pl.DataFrame | None = None
    policy: Any = None  # reconcile.policy.Policy applied tonight, or None
    model_parameters: pl.DataFrame | None = None  # the fitted model per system (reconcile.model.parameters_frame)


def _mode(series: pl.Series) -> str | None:
    s = series.drop_nulls()
    if s.is_empty():
        return None
    return s.value_counts(sort=True).row(0)[0]


def choose_county_policy(records: dict[str, pl.DataFrame], settings: Settings, county: str | None = None,
                         as_of: dt.date | None = None) -> pol.Policy | None:
    """The policy for the county the exports are about: `county` (a name or region code) if
    given, else the filing export's 县 column, else the commonest region of the IDs."""
    year = pol.school_year_of(as_of) if as_of else None
    if county:
        return pol.choose_policy(settings.policies, county=county, region=county, school_year=year)
    filing = records.get("filing")
    if filing is not None and "county_name" in filing.columns:
        name = _mode(filing["county_name"].cast(pl.String).str.strip_chars())
        found = pol.choose_policy(settings.policies, county=name, school_year=year) if name else None
        if found:
            return found
    for source in ("roster", "filing", "dibao"):
        df = records.get(source)
        if df is None or df.is_empty():
            continue
        region = _mode(df.select("id_status", "id_region").filter(pl.col("id_status").is_in(["valid", "legacy15"]))["id_region"])
        found = pol.choose_policy(settings.policies, region=region, school_year=year) if region else None
        if found:
            return found
    return None


# Up to this many roster and system rows together, a second process matches one system
# while this one matches the other (two cores). Above it (a prefecture in one inbox) its
# copy of the records would raise the night's peak memory more than the time is worth.
# (Tried and measured: normalising an export there saves nothing on a county, the new
# process's start-up and imports cost as much; and on a prefecture, normalising and
# matching each in a process of its own left this process as large as before, while the
# two together peaked higher.)
MATCH_ASIDE_UP_TO = 1_500_000


class Aside(Protocol):
    """Starts ``fn(*args)`` elsewhere at once (``second_process.start``): the pure chain
    itself never starts a process, the flow hands it one."""

    def __call__(self, fn: Callable[..., Any], /, *args: Any) -> Any: ...


def normalize_all(ingested: IngestResult, settings: Settings, *,
                  release: bool = False) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Records and row problems of every source. ``release``: take each source's raw sheets
    out of ``ingested.tables`` as soon as its records are built (see ``reconcile``)."""
    records: dict[str, pl.DataFrame] = {}
    problems = [ingested.problems.cast(PROBLEM_SCHEMA)]
    # Place keys from every source's spellings together: 结卜镇 in one file, 结补镇 in the rest.
    places = resolve_places(observed_places([t.frame for t in ingested.tables]), settings.places)
    # Person names too: one spelling in several sources is normalised once.
    names = name_forms(observed_names(ingested.tables))
    for source in SOURCES:
        recs, probs = normalize_source(ingested.tables, source, settings, places, names)
        records[source] = recs
        problems.append(probs)
        if release:
            # The records' strings are views into the raw sheets' buffers: let the sheets
            # go, then copy the strings into buffers of their own, a column at a time.
            ingested.tables[:] = [t for t in ingested.tables if t.source != source]
            records[source] = recs = compact(recs)
    # One display name per place key for the whole night, whichever source spelt it most.
    records = with_place_names(records, settings.places)
    return records, pl.concat(problems, how="vertical_relaxed")


def normalize_corrected(ingested: IngestResult, settings: Settings, decisions: pl.DataFrame | None, *,
                        release: bool = False) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, dict[str, int]]:
    """``normalize_all`` with the clerks' corrected values (``recon review import``) written
    into the roster sheets first, and how many rows they changed (``clerk_corrections``).
    ``release``: as for ``normalize_all``; the raw sheets are kept until the corrections
    are in (they need them again), and ``ingested.tables`` is empty afterwards."""
    has_decisions = decisions is not None and decisions.height > 0
    records, problems = normalize_all(ingested, settings, release=release and not has_decisions)
    counts: dict[str, int] = {}
    if has_decisions:
        tables, fixed = review.corrected_tables(ingested.tables, records["roster"], decisions)
        if fixed:
            records, problems = normalize_all(dataclasses.replace(ingested, tables=tables), settings)
        counts["clerk_corrections"] = fixed
    if release:
        ingested.tables.clear()
    return records, problems, counts


@dataclass(frozen=True)
class Linked:
    """`link_systems`' result: the stored `matches` and `model_parameters` tables, and per
    system the blocking figures (`match.blocking_figures`)."""

    matches: pl.DataFrame
    model_parameters: pl.DataFrame
    blocking: dict[str, Mapping[str, float]]


def _link_here(records: dict[str, pl.DataFrame], system: str, settings: Settings,
               progress: Progress | None) -> SystemLinks:
    if progress:
        progress(f"matching roster against {system}")
    return link_system(records["roster"], records[system], system, settings.match, progress)


def _link_all(records: dict[str, pl.DataFrame], settings: Settings, progress: Progress | None,
              aside: Aside | None) -> dict[str, SystemLinks]:
    rows = sum(records[s].height for s in ("roster", *SYSTEMS))
    if aside is None or rows > MATCH_ASIDE_UP_TO or len(SYSTEMS) < 2:
        return {system: _link_here(records, system, settings, progress) for system in SYSTEMS}
    away = SYSTEMS[-1]
    pending = aside(link_recorded, *matching_columns(records["roster"], records[away]), away, settings.match)
    try:
        got = {system: _link_here(records, system, settings, progress) for system in SYSTEMS if system != away}
        links, model, figures, said = pending.result()
    except BaseException:
        pending.cancel()
        raise
    if progress:
        progress(f"matching roster against {away} (in a second process, meanwhile)")
        for line in said:
            progress(line)
    got[away] = SystemLinks(links, model, MappingProxyType(figures))
    return got


def link_systems(records: dict[str, pl.DataFrame], settings: Settings, progress: Progress | None = None,
                 aside: Aside | None = None) -> Linked:
    """Links for every system, with both sides' lineage (the stored `matches` table), the
    model fitted per system (the stored `model_parameters` table) and its blocking figures.
    ``aside``: a way to run one system's matching in a second process meanwhile (a county
    night, up to ``MATCH_ASIDE_UP_TO`` rows; the result is the same)."""
    roster = records["roster"]
    found = _link_all(records, settings, progress, aside)
    parts, params, blocking = [], [], {}
    lineage_r = roster.select(
        pl.col("rec").alias("roster_rec"),
        pl.col("file").alias("roster_file"),
        pl.col("sheet").alias("roster_sheet"),
        pl.col("row").alias("roster_row"),
    )
    for system in SYSTEMS:
        got = found[system]
        params.append(parameters_frame(got.model, system))
        blocking[system] = got.blocking
        lineage_s = records[system].select(
            pl.col("rec").alias("system_rec"),
            pl.col("file").alias("system_file"),
            pl.col("sheet").alias("system_sheet"),
            pl.col("row").alias("system_row"),
        )
        parts.append(got.links.join(lineage_r, on="roster_rec", how="left").join(lineage_s, on="system_rec", how="left"))
    out = pl.concat(parts, how="diagonal_relaxed")
    model = pl.concat(params) if params else pl.DataFrame(schema=PARAMETER_COLUMNS)
    return Linked(out.sort(["roster_rec", "system"]), model, blocking)


def blocking_counts(blocking: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The blocking figures as run counts: `candidate_pairs_<system>`, `candidates_mean_<system>`
    (a roster row, on average), `candidates_max_<system>`, `candidates_capped_<system>`."""
    out: dict[str, float] = {}
    for system, f in blocking.items():
        out[f"candidate_pairs_{system}"] = int(f["pairs"])
        out[f"candidates_mean_{system}"] = float(f["mean"])
        out[f"candidates_max_{system}"] = int(f["max"])
        out[f"candidates_capped_{system}"] = int(f["capped"])
    return out


def match_all(records: dict[str, pl.DataFrame], settings: Settings, progress: Progress | None = None) -> pl.DataFrame:
    """The links of `link_systems` alone."""
    return link_systems(records, settings, progress).matches


def summarise(records: dict[str, pl.DataFrame], problems: pl.DataFrame, matches: pl.DataFrame, discrepancies: pl.DataFrame) -> dict[str, int]:
    roster_n = records["roster"].height
    best = (
        matches.group_by("roster_rec")
        .agg((pl.col("status") == "matched").any().alias("sure"))
        if matches.height
        else pl.DataFrame(schema={"roster_rec": pl.UInt32, "sure": pl.Boolean})
    )
    matched = int(best["sure"].sum()) if best.height else 0
    counts = {
        "roster_rows": roster_n,
        "dibao_rows": records["dibao"].height,
        "filing_rows": records["filing"].height,
        "problem_rows": problems.height,
        "matched": matched,
        "review": best.height - matched,
        "not_found": roster_n - best.height,
        "discrepancies": discrepancies.height,
    }
    for kind, n in discrepancies.group_by("kind").len().sort("kind").iter_rows():
        counts[f"kind_{kind}"] = n
    return counts


def reconcile(ingested: IngestResult, settings: Settings, progress: Progress | None = None, *,
              decisions: pl.DataFrame | None = None, as_of: dt.date | None = None, county: str | None = None,
              previous: Previous | None = None, release_input: bool = False, aside: Aside | None = None) -> Results:
    """The whole chain. ``decisions``: the clerks' stored decisions (the ``reviews`` table),
    applied around matching: corrected IDs before normalising, confirmed/rejected pairs after
    matching, decided items taken out after the rules (see ``reconcile.review``). ``as_of``
    (the term's reference date) turns on the date-based checks (eligibility on that date, age
    vs grade, missed eligible children); ``previous`` (read by the flow from DuckDB) the
    night-over-night comparisons. ``release_input``: empty ``ingested.tables`` once the
    records are built, so the raw sheet frames (a gigabyte for a million-row county) are
    freed while matching runs; the caller's ``IngestResult`` then has no tables. ``aside``:
    as for ``link_systems``."""
    if progress:
        progress("normalising records")
    records, problems, review_counts = normalize_corrected(ingested, settings, decisions, release=release_input)
    has_decisions = decisions is not None and decisions.height > 0
    linked = link_systems(records, settings, progress, aside)
    # Matching is done with the columns built for it alone; the rules read the rest, held small.
    records = {s: as_categories(f.drop(MATCH_ONLY, strict=False), FEW_VALUES) for s, f in records.items()}
    matches, model_parameters = linked.matches, linked.model_parameters
    review_counts.update(blocking_counts(linked.blocking))
    if has_decisions:
        matches, link_counts = review.apply_links(matches, records, decisions)
        review_counts.update(link_counts)
    return judge(records, problems, matches, settings, progress, decisions=decisions, as_of=as_of, county=county,
                 previous=previous, counts=review_counts, model_parameters=model_parameters)


def judge(records: dict[str, pl.DataFrame], problems: pl.DataFrame, matches: pl.DataFrame, settings: Settings,
          progress: Progress | None = None, *, decisions: pl.DataFrame | None = None, as_of: dt.date | None = None,
          county: str | None = None, previous: Previous | None = None, counts: dict[str, int] | None = None,
          borrowed: Borrowed | None = None, model_parameters: pl.DataFrame | None = None) -> Results:
    """Everything after matching: rules, clerk decisions, 公示名单, completeness, counts.
    ``borrowed`` (a province run): the other counties' records this county's roster was
    linked to and what of its own they claimed (see ``reconcile.crosscounty``); the exports'
    completeness and night-over-night changes stay the county's own. ``model_parameters``:
    the matching model fitted per system (``link_systems``), stored as it is."""
    if progress:
        progress("applying discrepancy rules")
    review_counts = dict(counts or {})
    own = {s: records[s] for s in SYSTEMS}
    systems, links = (own, matches) if borrowed is None else borrowed.extend(own, matches)
    policy = choose_county_policy(records, settings, county, as_of)
    problems_export = export_problems(records["roster"], own, settings, previous.counts if previous else None)
    ctx = RuleContext(as_of=as_of, policy=policy, incomplete=problems_export,
                      claimed=borrowed.claimed if borrowed else None,
                      elsewhere=borrowed.elsewhere if borrowed else None)
    discrepancies = find_discrepancies(records["roster"], systems, links, settings, ctx)
    discrepancies, annotated = review.annotate(discrepancies, {"roster": records["roster"], **systems}, decisions)
    review_counts.update(annotated)
    eligible = notice_rows(review.eligible_students(
        records["roster"], systems, links, discrepancies, settings.qualifying_poverty, settings.qualifying_dibao
    ), records["roster"], settings, policy)
    changes = household_changes(records["roster"], own, matches, settings,
                                previous.records if previous else None, as_of, problems_export)
    if borrowed is not None:
        discrepancies = borrowed.mark(discrepancies)
        links = borrowed.stored_links(links)
        model_parameters = borrowed.model_parameters(model_parameters)
    # The output shapes are a contract with analysts: check them before anything is published.
    RowProblemSchema.validate(problems)
    MatchSchema.validate(links)
    DiscrepancySchema.validate(discrepancies)
    ExportProblemSchema.validate(problems_export)
    HouseholdChangeSchema.validate(changes)
    counts_out = summarise(records, problems, links, discrepancies)
    counts_out.update(review_counts)
    counts_out["eligible"] = eligible.height
    counts_out["export_problems"] = problems_export.height
    counts_out["household_changes"] = changes.height
    # Tonight's own links are the matches as link_systems built them, alive in the caller as
    # well: a compacted copy would be a second one (a gigabyte for a prefecture).
    stored_links = links if links is matches else compact(links)
    return Results(records, compact(problems), stored_links, compact(discrepancies), counts_out, compact(eligible),
                   problems_export, changes, policy, model_parameters)


def records_table(results: Results) -> pl.DataFrame:
    """All sources' records in one frame, as the `records` table stores them."""
    return pl.concat(list(results.records.values()), how="diagonal_relaxed")


def stored_tables(results: Results, county: str | None = None) -> dict[str, pl.DataFrame | list[pl.DataFrame] | None]:
    """What a run publishes (``store.finish_run``'s ``tables``): records one frame per
    source, so a county-wide run never holds a concatenated copy; every frame carries
    ``county`` (this county's name: the policy's, else ``county`` as given)."""
    name = results.policy.county if results.policy is not None else county

    def tag(frame: pl.DataFrame | None) -> pl.DataFrame | None:
        return None if frame is None else frame.with_columns(pl.lit(name, pl.String).alias("county"))

    return {
        "records": [tag(f) for f in results.records.values()],
        "row_problems": tag(results.problems),
        "matches": tag(results.matches).with_columns(pl.col("county").alias("system_county")),
        "discrepancies": tag(results.discrepancies),
        "export_problems": tag(results.export_problems),
        "household_changes": tag(results.household_changes),
        "model_parameters": None if results.model_parameters is None
        else tag(results.model_parameters).with_columns(pl.col("county").alias("system_county")),
    }
