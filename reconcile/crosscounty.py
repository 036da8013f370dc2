"""Students schooled across county lines: the look-up after every county has matched its own.

A child whose household is registered in 凤凰县 boards at a 花垣县 high school: he is on
花垣县's roster and in 凤凰县's exports. Each county first matches its roster against its
own exports; a roster row not found in a qualifying household there is then looked for in
the other counties' exports — routed by the region code of a usable ID to the county that
code belongs to (one county's exports, not the province's), otherwise (no usable ID, a
region no county of the run has, or nothing found there) in the exports of every other
county at once, through the same blocks and scoring as within a county
(``match.match_system`` on the rows still unresolved, so the candidate pairs stay bounded
by the blocks, not by the province). The best link per roster row and system wins.

What a county's rules then get from the others is a :class:`Borrowed`: the foreign system
records its roster was linked to, the links, the records of its own exports that other
counties' rosters claimed (not ``missed_eligible`` here), and its roster rows whose student
another county's roster claims too (``duplicate_claim``), and the models the look-up fitted
(stored in ``model_parameters`` beside each county's own). Clerks' decisions on pairs the
look-up links (a returned workbook's 确认是同一人 / 不是同一人 on an item about another
county's record) hold there as at home: ``review.apply_links`` on the look-up's links.
Pure: frames in, frames out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from .config import Settings
from .fields import SYSTEMS
from .match import match_system
from .model import PARAMETER_COLUMNS, parameters_frame
from . import review
from .rules import USABLE, claim_identities, qualifies_expr
from .vocabulary import SYSTEM_LABELS

__all__ = ["Shard", "Borrowed", "look_across", "home_region", "unresolved", "in_province"]

_LINK_KEYS = ["roster_rec", "system"]


@dataclass(frozen=True)
class Shard:
    """One county after matching its own exports: records per source and its links
    (``pipeline.match_all``'s shape)."""

    county: str
    records: Mapping[str, pl.DataFrame]
    matches: pl.DataFrame


@dataclass(frozen=True)
class Borrowed:
    """What one county's rules see of the other counties (see the module doc).

    ``systems``: per system, the other counties' records this roster was linked to (all
    their columns, ``county`` their county, ``rec`` their own numbering); ``links``: those
    links (``match_all``'s shape plus ``system_county``); ``claimed``: (system, rec) of this
    county's records linked from another county's roster; ``elsewhere``: (roster_rec, places)
    of this roster's rows whose student another county's roster also claims; ``models``:
    the models fitted by the look-up of this roster's rows (``parameters_frame`` rows plus
    ``system_county``: the county whose exports a routed pass searched, null for the pass
    over every other county's)."""

    county: str
    systems: Mapping[str, pl.DataFrame]
    links: pl.DataFrame
    claimed: pl.DataFrame
    elsewhere: pl.DataFrame | None = None
    models: pl.DataFrame | None = None
    clerks: Mapping[str, int] = dataclasses.field(default_factory=dict)  # clerk_links, clerk_rejections

    def model_parameters(self, own: pl.DataFrame | None) -> pl.DataFrame | None:
        """The county's own model (``system_county`` itself) and the look-up's, as stored."""
        if own is None:
            return self.models
        own = own.with_columns(pl.lit(self.county, pl.String).alias("system_county"))
        if self.models is None or self.models.is_empty():
            return own
        return pl.concat([own, self.models], how="diagonal_relaxed")

    def extend(self, own: Mapping[str, pl.DataFrame],
               matches: pl.DataFrame) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
        """The systems and links the rules read: the borrowed records numbered after this
        county's own (``origin_rec`` keeps their own number), links renumbered alike."""
        systems: dict[str, pl.DataFrame] = {}
        parts = [matches.with_columns(pl.lit(self.county).alias("system_county"),
                                      pl.lit(None, pl.UInt32).alias("origin_rec"))]
        for name, frame in own.items():
            foreign = self.systems.get(name)
            if foreign is None or foreign.is_empty():
                systems[name] = frame
                continue
            offset = frame.height
            foreign = foreign.with_columns(
                pl.col("rec").alias("origin_rec"),
                (pl.int_range(pl.len(), dtype=pl.UInt32) + offset).alias("rec"),
            )
            systems[name] = pl.concat([frame, foreign.drop("origin_rec")], how="diagonal_relaxed")
            renumber = foreign.select(pl.col("county").alias("system_county"), "origin_rec",
                                      pl.col("rec").alias("local_rec"))
            parts.append(
                self.links.filter(pl.col("system") == name)
                .rename({"system_rec": "origin_rec"})
                .join(renumber, on=["system_county", "origin_rec"], how="inner")
                .rename({"local_rec": "system_rec"})
            )
        links = pl.concat(parts, how="diagonal_relaxed").sort(_LINK_KEYS, maintain_order=True)
        return systems, links

    def stored_links(self, links: pl.DataFrame) -> pl.DataFrame:
        """Links as stored: a borrowed record by its own county and number."""
        return links.with_columns(pl.coalesce("origin_rec", "system_rec").alias("system_rec")).drop("origin_rec")

    def mark(self, discrepancies: pl.DataFrame) -> pl.DataFrame:
        """``system_county`` on every item; an item about another county's record says where."""
        county = pl.col("system_file").str.split("/").list.first()
        foreign = pl.col("system_file").is_not_null() & (county != self.county)
        label = pl.col("system").replace_strict(dict(SYSTEM_LABELS), default=pl.col("system"))
        return discrepancies.with_columns(
            pl.when(pl.col("system_file").is_not_null()).then(county).alias("system_county"),
            pl.when(foreign).then(pl.format("{}（在{}的{}导出中找到：{}第{}行）", pl.col("message"), county, label,
                                             pl.col("system_file"), pl.col("system_row")))
            .otherwise(pl.col("message")).alias("message"),
        )


def in_province(frame: pl.DataFrame, county: str) -> pl.DataFrame:
    """Lineage relative to the province inbox: ``<county>/roster/...``."""
    if "file" not in frame.columns:
        return frame
    return frame.with_columns(pl.concat_str([pl.lit(f"{county}/"), pl.col("file")]).alias("file"))


def home_region(shard: Shard) -> str | None:
    """The region code of a county: the commonest of its exports' usable IDs."""
    ids = pl.concat([shard.records[s].select("id_region", "id_status") for s in SYSTEMS if s in shard.records])
    regions = ids.filter(pl.col("id_status").is_in(USABLE)).get_column("id_region").drop_nulls()
    if regions.is_empty():
        return None
    return regions.value_counts(sort=True).row(0)[0]


def _qualifying_links(shard: Shard, settings: Settings, as_of) -> pl.DataFrame:
    parts = []
    for name in SYSTEMS:
        s = shard.records[name]
        cols = s.columns

        def col(c: str, alias: str) -> pl.Expr:
            return (pl.col(c) if c in cols else pl.lit(None, pl.String)).alias(alias)

        status = s.select(pl.col("rec").alias("system_rec"), col("poverty_status_norm", "poverty_status"),
                          col("exit_year", "exit_year"), col("status_norm", "dibao_status"),
                          col("approved_date", "approved_date"))
        parts.append(shard.matches.filter((pl.col("system") == name) & (pl.col("status") == "matched"))
                     .select("roster_rec", "system", "system_rec").join(status, on="system_rec", how="inner"))
    links = pl.concat(parts, how="diagonal_relaxed")
    return links.filter(qualifies_expr(settings, as_of)).select("roster_rec").unique()


def unresolved(shard: Shard, settings: Settings, as_of=None) -> pl.DataFrame:
    """The county's roster rows not found (matched) in a qualifying household of its own exports."""
    roster = shard.records["roster"]
    return roster.join(_qualifying_links(shard, settings, as_of).rename({"roster_rec": "rec"}), on="rec", how="anti")


def _pool(shards: Mapping[str, Shard], counties: list[str], system: str) -> pl.DataFrame:
    """Several counties' records of one system as one frame numbered 0.. (``county`` and
    ``origin_rec`` say whose record each is)."""
    frames = [shards[c].records[system].with_columns(pl.lit(c).alias("county"), pl.col("rec").alias("origin_rec"))
              for c in counties if not shards[c].records[system].is_empty()]
    if not frames:
        return pl.DataFrame()
    pool = pl.concat(frames, how="diagonal_relaxed")
    return pool.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("rec"))


_MODEL_SCHEMA = {**PARAMETER_COLUMNS, "system_county": pl.String}


def _match_in(roster: pl.DataFrame, shards: Mapping[str, Shard], counties: list[str], settings: Settings,
              searched: str | None) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Links from these roster rows into the named counties' exports, lineage included, and
    the model fitted per system (``system_county``: ``searched``)."""
    out, models = [], []
    for system in SYSTEMS:
        pool = _pool(shards, counties, system)
        if pool.is_empty() or roster.is_empty():
            continue
        links, model = match_system(roster, pool, system, settings.match)
        models.append(parameters_frame(model, system).with_columns(pl.lit(searched, pl.String).alias("system_county")))
        out.append(links.join(
            pool.select(pl.col("rec").alias("system_rec"), pl.col("county").alias("system_county"),
                        pl.col("origin_rec").alias("_origin"), pl.col("file").alias("system_file"),
                        pl.col("sheet").alias("system_sheet"), pl.col("row").alias("system_row")),
            on="system_rec", how="left",
        ).with_columns(pl.col("_origin").alias("system_rec")).drop("_origin"))
    return (pl.concat(out, how="diagonal_relaxed") if out else pl.DataFrame()), models


def _best(links: list[pl.DataFrame]) -> pl.DataFrame:
    links = [x for x in links if x.height]
    if not links:
        return pl.DataFrame()
    return (pl.concat(links, how="diagonal_relaxed")
            .sort(["roster_rec", "system", "weight", "system_county"], descending=[False, False, True, False])
            .unique(_LINK_KEYS, keep="first", maintain_order=True))


def _decided(links: pl.DataFrame, lost: pl.DataFrame, shards: Mapping[str, Shard], others: list[str],
             decisions: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """The look-up's links after the clerks' confirmed and rejected pairs: numbered into the
    other counties' pooled records for ``review.apply_links``, then back to each record's own
    county and number (a confirmed pair the look-up did not find tonight is added)."""
    pools = {s: p for s in SYSTEMS if not (p := _pool(shards, others, s)).is_empty()}
    if not pools:
        return links, {}
    numbers = pl.concat([pools[s].select(pl.lit(s).alias("system"), pl.col("rec").alias("_pooled"),
                                         pl.col("county").alias("system_county"), pl.col("origin_rec"))
                         for s in pools])
    pooled = (links.rename({"system_rec": "origin_rec"})
              .join(numbers, on=["system", "system_county", "origin_rec"], how="left")
              .rename({"_pooled": "system_rec"}).drop("system_county", "origin_rec"))
    decided, counts = review.apply_links(pooled, {"roster": lost, **pools}, decisions)
    back = decided.join(numbers.rename({"_pooled": "system_rec"}), on=["system", "system_rec"], how="left")
    back = back.with_columns(pl.col("origin_rec").alias("system_rec")).drop("origin_rec")
    return back.select(links.columns).cast(links.schema), counts


def _cross_links(county: str, shards: Mapping[str, Shard], by_region: Mapping[str, str], settings: Settings,
                 as_of, decisions: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """This county's unresolved roster rows linked into the other counties' exports, the
    models fitted on the way, and what the clerks' decisions changed there."""
    lost = unresolved(shards[county], settings, as_of)
    others = [c for c in shards if c != county]
    models: list[pl.DataFrame] = []
    if lost.is_empty() or not others:
        return pl.DataFrame(), pl.DataFrame(schema=_MODEL_SCHEMA), {}
    target = pl.when(pl.col("id_status").is_in(USABLE)).then(
        pl.col("id_region").replace_strict(dict(by_region), default=None, return_dtype=pl.String))
    lost = lost.with_columns(target.alias("_to"))
    found: list[pl.DataFrame] = []
    for to in sorted(c for c in lost["_to"].drop_nulls().unique().to_list() if c != county):
        links, fitted = _match_in(lost.filter(pl.col("_to") == to).drop("_to"), shards, [to], settings, to)
        found.append(links)
        models.extend(fitted)
    routed = _best(found)
    sure = routed.filter(pl.col("status") == "matched").select("roster_rec").unique() if routed.height else None
    rest = lost.drop("_to") if sure is None else lost.drop("_to").join(sure.rename({"roster_rec": "rec"}), on="rec", how="anti")
    pooled, fitted = _match_in(rest, shards, others, settings, None)
    models.extend(fitted)
    models_frame = pl.concat(models, how="vertical_relaxed") if models else pl.DataFrame(schema=_MODEL_SCHEMA)
    links = _best([routed, pooled])
    if links.is_empty():  # a confirmed pair needs tonight's look-up to reach its roster row
        return links, models_frame, {}
    roster = shards[county].records["roster"].select(
        pl.col("rec").alias("roster_rec"), pl.col("file").alias("roster_file"),
        pl.col("sheet").alias("roster_sheet"), pl.col("row").alias("roster_row"))
    links = links.join(roster, on="roster_rec", how="left")
    clerks: dict[str, int] = {}
    if decisions is not None and decisions.height:
        links, clerks = _decided(links, lost.drop("_to"), shards, others, decisions)
    return links.sort(_LINK_KEYS), models_frame, clerks


def _elsewhere(extended: Mapping[str, tuple[Mapping[str, pl.DataFrame], pl.DataFrame]],
               shards: Mapping[str, Shard]) -> dict[str, pl.DataFrame]:
    """Per county, its roster rows whose student another county's roster claims too."""
    parts = []
    for county, (systems, links) in extended.items():
        roster = shards[county].records["roster"]
        who = claim_identities(roster, systems, links)
        parts.append(who.join(roster.select(pl.col("rec").alias("roster_rec"), "file", "row"), on="roster_rec")
                     .with_columns(pl.lit(county).alias("county")))
    if not parts:
        return {}
    who = pl.concat(parts)
    spread = who.group_by("_who").agg(pl.col("county").n_unique().alias("_n")).filter(pl.col("_n") > 1)
    dup = who.join(spread.select("_who"), on="_who").sort(["county", "file", "row"])
    places = dup.group_by("_who").agg(pl.format("{}第{}行", "file", "row").str.join("；").alias("places"))
    dup = dup.join(places, on="_who")
    return {c: dup.filter(pl.col("county") == c).select("roster_rec", "places") for c in shards}


def look_across(shards: Mapping[str, Shard], settings: Settings, as_of=None,
                decisions: pl.DataFrame | None = None) -> dict[str, Borrowed]:
    """Every county's :class:`Borrowed` (counties in name order, so the result does not
    depend on the order the shards arrived in). ``decisions``: the province's stored clerk
    decisions (the ``reviews`` table)."""
    shards = {c: shards[c] for c in sorted(shards)}
    by_region: dict[str, str] = {}
    for county, shard in shards.items():
        region = home_region(shard)
        if region and region not in by_region:
            by_region[region] = county
    found = {c: _cross_links(c, shards, by_region, settings, as_of, decisions) for c in shards}
    cross = {c: links for c, (links, _, _) in found.items()}
    borrowed: dict[str, Borrowed] = {}
    for county, links in cross.items():
        systems: dict[str, pl.DataFrame] = {}
        for system in SYSTEMS:
            want = (links.filter(pl.col("system") == system).select("system_county", "system_rec").unique()
                    if links.height else None)
            frames = []
            for other in shards:
                if want is None or other == county:
                    continue
                recs = want.filter(pl.col("system_county") == other).select(pl.col("system_rec").alias("rec"))
                if recs.height:
                    frames.append(shards[other].records[system].join(recs, on="rec", how="semi")
                                  .with_columns(pl.lit(other).alias("county")))
            systems[system] = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        borrowed[county] = Borrowed(county, systems, links if links.height else pl.DataFrame(schema={
            "roster_rec": pl.UInt32, "system": pl.String, "system_rec": pl.UInt32, "system_county": pl.String}),
            claimed=pl.DataFrame(schema={"system": pl.String, "rec": pl.UInt32}), models=found[county][1],
            clerks=found[county][2])
    # what each county's records were claimed by the others
    for county in shards:
        claims = [b.links.filter(pl.col("system_county") == county).select("system", pl.col("system_rec").alias("rec"))
                  for c, b in borrowed.items() if c != county and b.links.height]
        if claims:
            borrowed[county] = dataclasses.replace(borrowed[county], claimed=pl.concat(claims).unique().sort(["system", "rec"]))
    extended = {c: b.extend({s: shards[c].records[s] for s in SYSTEMS}, shards[c].matches) for c, b in borrowed.items()}
    elsewhere = _elsewhere(extended, shards)
    return {c: dataclasses.replace(b, elsewhere=elsewhere.get(c)) for c, b in borrowed.items()}
