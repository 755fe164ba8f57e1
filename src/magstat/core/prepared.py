"""What the rules read from a knowledge base, prepared once per knowledge base.

Every lookup table, code set, threshold and citation list that depends only on the knowledge
base is built here once (then cached per knowledge-base content, see
:func:`magstat.kb.cache.per_kb`), so that an assessment does only the work its patient needs.
The rules read these instead of rebuilding them for every patient; the answer is the same.

Pure: built from the knowledge base alone, no I/O, clock or environment.

.. versionadded:: 0.3.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Any

from magstat.core.result import Action, InputUsed, IntakeResult
from magstat.errors import KnowledgeBaseError
from magstat.kb.cache import per_kb
from magstat.kb.schema import DriRow, Interaction, KnowledgeBase, OutcomeDomain

__all__ = ["Prepared", "PreparedDomain", "prepared"]


class _Parameters(dict[str, float]):
    """Parameter id -> value; an undefined id is a knowledge-base error, as ``kb.param`` says."""

    def __missing__(self, key: str) -> float:
        raise KnowledgeBaseError(f"parameter {key!r} is not defined")


@dataclass(frozen=True, slots=True)
class PreparedDomain:
    """One outcome domain with what deciding its relevance needs."""

    domain: OutcomeDomain
    condition_triggers: tuple[tuple[str, str], ...]
    """(condition id, display name) of each condition trigger that the knowledge base defines."""
    sign_triggers: tuple[tuple[str, str], ...]
    """(sign id, display name) of each sign trigger that the knowledge base defines."""
    sources: tuple[str, ...]
    """The domain's sources, then its evidence's, each once."""
    evidence_forms: tuple[tuple[dict[str, Any], tuple[str, ...]], ...]
    """Each evidence row as (its JSON form without its sources, its sources): an assessment
    copies the form and adds a new list of the sources."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """The knowledge base's tables in the shapes the rules use (see the module docstring)."""

    kb: KnowledgeBase
    params: Mapping[str, float]
    """Parameter id -> value."""
    param_sources: Mapping[str, tuple[str, ...]]
    """Parameter id -> its sources."""
    lab_limits: Mapping[str, tuple[str, float, float]]
    """Test id -> (canonical unit, lowest plausible value, highest plausible value)."""
    no_dates: dict[str, date]
    """Test id -> ``date.min``, for every test: the start of the walk that picks the most
    recent result of each test (a copy per assessment; never changed itself)."""
    drug_classes_of: Mapping[str, tuple[str, ...]]
    """Drug id -> its class ids."""
    mds_components_of: Mapping[str, frozenset[str]]
    """Drug id -> the MDS components its classes count for."""
    mg_product_drugs: frozenset[str]
    """Drugs of the class ``magnesium_product``."""
    diuretic_classes: frozenset[str]
    """Classes that count for the MDS diuretic component."""
    condition_effect: Mapping[str, str | None]
    """Condition id -> its effect (``lowers``, ``raises`` or other)."""
    domains: tuple[PreparedDomain, ...]
    dri_by_state: Mapping[str, tuple[DriRow, ...]]
    """DRI rows by life-stage state (``none``, ``pregnancy``, ``lactation``), in the knowledge base's order."""
    dri_bands: Mapping[str, tuple[tuple[float, ...], tuple[float, ...], tuple[tuple[DriRow, ...], ...]]]
    """Per state whose age bands do not overlap: the bands' lower and upper ages, in order, and
    each band's rows in the knowledge base's order (a state with overlapping bands is absent)."""
    condition_relevance: Mapping[str, tuple[tuple[int, int, str], ...]]
    """Condition id -> (index in ``domains``, place among the domain's triggers, display name)
    for each place where a domain names it as a condition trigger (with a name)."""
    sign_relevance: Mapping[str, tuple[tuple[int, int, str], ...]]
    """Sign id -> the same for sign triggers, placed after the domain's condition triggers."""
    cardiovascular_domains: tuple[int, ...]
    """The indexes in ``domains`` of the domain ``cardiovascular`` (a high MDS makes it relevant)."""
    check_mg_interactions: tuple[Interaction, ...]
    """The interaction rows whose advice is a magnesium check, in the knowledge base's order."""
    statement_sources: Mapping[str, tuple[str, ...]]
    """Statement id -> its sources."""
    mds_sources: tuple[str, ...]
    """The MDS result's sources (its kidney cut-offs and bands)."""
    mds_finding_sources: tuple[str, ...]
    """The MDS finding's sources (those and the MDS explanation's)."""
    interactions_of: Mapping[str, tuple[int, ...]]
    """Drug or class id -> the indexes in ``kb.interactions`` of the rows that name it."""
    interaction_texts: tuple[str, ...]
    """Each interaction row's text (name, effect and advice), in the knowledge base's order."""
    finding_inputs: dict[str, InputUsed]
    """Finding id -> the input naming it in the status finding (filled as ids are met; ids
    come from the knowledge base, never from patient text)."""
    mds_texts: dict[tuple[int | None, ...], tuple[Any, ...]]
    """MDS component points -> (score, complete, band, possible range, the MDS finding's text,
    the unknown components or ``None``), filled as combinations are met (at most 108)."""
    condition_findings: Mapping[str, tuple[str, str, str, str, tuple[str, ...], str]]
    """Condition id -> (effect, text, weight, rule, sources, strength) of the finding a current
    condition gives, for the conditions that lower or raise magnesium."""
    drug_names: Mapping[str, str]
    """Drug id -> its name."""
    class_rules: Mapping[str, str]
    """Class id -> the rule of the finding of a current drug of a class that lowers magnesium
    and carries a weight (a risk factor when current)."""
    raising_classes: frozenset[str]
    """Classes that raise magnesium (shown when current)."""
    fixed_actions: dict[tuple[str, str, str], Action]
    """(statement id, fixed reason, priority) -> the action, for reasons that are constant
    texts of the rules (never patient text); filled as they are met."""
    unknown_intake: dict[str | None, IntakeResult]
    """DRI row id (``None`` without a row) -> the intake result when the intake is unknown (it
    depends only on the row); filled as rows are met."""


@per_kb
def prepared(kb: KnowledgeBase) -> Prepared:
    """Build the prepared tables of ``kb`` (once per knowledge-base content)."""
    mds_components_of = {
        drug.id: frozenset(
            c for c in (kb.drug_classes[k].mds_component for k in drug.classes) if c is not None
        )
        for drug in kb.drugs.values()
    }
    domains = []
    for domain in kb.outcomes.values():
        conditions = tuple(
            (c, kb.conditions[c].name) for c in domain.condition_triggers if c in kb.conditions
        )
        signs = tuple((s, kb.signs[s].name) for s in domain.sign_triggers if s in kb.signs)
        sources = tuple(dict.fromkeys([*domain.sources, *(s for e in domain.evidence for s in e.sources)]))
        domains.append(
            PreparedDomain(
                domain,
                conditions,
                signs,
                sources,
                tuple(
                    ({"text": e.text, "effect": e.effect, "strength": e.strength, "sources": None}, e.sources)
                    for e in domain.evidence
                ),
            )
        )
    mds_sources = tuple(
        dict.fromkeys(
            [*kb.parameters["mds.egfr_mild_below"].sources, *kb.parameters["mds.band_high"].sources]
        )
    )
    dri_by_state: dict[str, list[DriRow]] = {}
    for row in kb.dri:
        dri_by_state.setdefault(row.state, []).append(row)
    dri_bands = {}
    for state, rows in dri_by_state.items():
        bands: dict[tuple[float, float], list[DriRow]] = {}
        for row in rows:
            bands.setdefault((row.age_min, row.age_max), []).append(row)
        edges = sorted(bands)
        if all(a[1] <= b[0] for a, b in pairwise(edges)):
            dri_bands[state] = (
                tuple(low for low, _ in edges),
                tuple(high for _, high in edges),
                tuple(tuple(bands[edge]) for edge in edges),
            )
    condition_relevance: dict[str, list[tuple[int, int, str]]] = {}
    sign_relevance: dict[str, list[tuple[int, int, str]]] = {}
    for i, d in enumerate(domains):
        for place, (c, name) in enumerate(d.condition_triggers):
            condition_relevance.setdefault(c, []).append((i, place, name))
        for place, (s, name) in enumerate(d.sign_triggers, start=len(d.condition_triggers)):
            sign_relevance.setdefault(s, []).append((i, place, name))
    interactions_of: dict[str, list[int]] = {}
    for i, interaction in enumerate(kb.interactions):
        for key in (*interaction.drugs, *interaction.classes):
            if i not in interactions_of.setdefault(key, []):
                interactions_of[key].append(i)
    return Prepared(
        kb=kb,
        params=_Parameters({k: p.value for k, p in kb.parameters.items()}),
        param_sources={k: p.sources for k, p in kb.parameters.items()},
        lab_limits={t.id: (t.canonical_unit, t.plausible_low, t.plausible_high) for t in kb.tests.values()},
        no_dates=dict.fromkeys(kb.tests, date.min),
        drug_classes_of={d.id: d.classes for d in kb.drugs.values()},
        mds_components_of=mds_components_of,
        mg_product_drugs=frozenset(d.id for d in kb.drugs.values() if "magnesium_product" in d.classes),
        diuretic_classes=frozenset(c.id for c in kb.drug_classes.values() if c.mds_component == "diuretic"),
        condition_effect={c.id: c.effect for c in kb.conditions.values()},
        domains=tuple(domains),
        dri_by_state={k: tuple(v) for k, v in dri_by_state.items()},
        dri_bands=dri_bands,
        condition_relevance={k: tuple(v) for k, v in condition_relevance.items()},
        sign_relevance={k: tuple(v) for k, v in sign_relevance.items()},
        cardiovascular_domains=tuple(i for i, d in enumerate(domains) if d.domain.id == "cardiovascular"),
        check_mg_interactions=tuple(row for row in kb.interactions if row.check_mg),
        statement_sources={k: s.sources for k, s in kb.statements.items()},
        mds_sources=mds_sources,
        mds_finding_sources=tuple(dict.fromkeys([*mds_sources, *kb.statement("ex.mds").sources])),
        interactions_of={k: tuple(v) for k, v in interactions_of.items()},
        interaction_texts=tuple(f"{row.name}: {row.effect} {row.advice}" for row in kb.interactions),
        finding_inputs={},
        mds_texts={},
        condition_findings={
            c.id: (
                c.effect,
                f"{c.name}: {c.what_is_known}",
                c.weight if c.effect == "lowers" else "excess_risk",
                f"a current condition that lowers magnesium counts as a {c.weight} risk factor"
                if c.effect == "lowers"
                else "a current condition that raises magnesium is a risk for hypermagnesaemia, not a deficit",
                c.sources,
                c.evidence,
            )
            for c in kb.conditions.values()
            if c.effect in ("lowers", "raises")
        },
        drug_names={d.id: d.name for d in kb.drugs.values()},
        class_rules={
            c.id: f"a current drug of a class that lowers magnesium counts as a {c.weight} risk factor"
            for c in kb.drug_classes.values()
            if c.effect == "lowers" and c.weight is not None
        },
        raising_classes=frozenset(c.id for c in kb.drug_classes.values() if c.effect == "raises"),
        fixed_actions={},
        unknown_intake={},
    )
