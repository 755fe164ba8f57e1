"""Typed entries of the knowledge base, and the strict reader that builds them from TOML.

Every entry names the sources it rests on; the reader refuses an entry without sources, a
source id that the sources table does not define, a key it does not know and a value of the
wrong type. Nothing here reads files: :func:`build` takes already-parsed documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from magstat.errors import KnowledgeBaseError

__all__ = [
    "EVIDENCE_LEVELS",
    "Analyte",
    "Condition",
    "ContextCategory",
    "ContextLexicon",
    "DriRow",
    "Drug",
    "DrugClass",
    "Food",
    "Interaction",
    "KnowledgeBase",
    "LabTest",
    "LoincCode",
    "OutcomeDomain",
    "OutcomeEvidence",
    "Parameter",
    "RiskOutcome",
    "RiskPrediction",
    "RiskTables",
    "Sign",
    "Source",
    "Statement",
    "Supplement",
    "build",
]

EVIDENCE_LEVELS = (
    "guideline",  # guideline or consensus statement of a professional body
    "regulatory",  # regulator's communication or product label (SmPC, US PI)
    "systematic-review",  # meta-analysis or systematic review
    "rct",
    "cohort",  # observational study: cohort, case-control, cross-sectional
    "case-series",
    "review",  # narrative review, textbook, reference text
    "terminology",  # code system or value set (LOINC, SNOMED CT, RxNorm, ATC, ICD-10-CM)
    "secondary",  # a page that reports a primary source we could not open
    "computed",  # derived by us from stated formulas (molar masses, unit factors)
    "project-choice",  # a decision of this project where the sources leave a gap; says so
)

Weight = Literal["major", "minor"]
Effect = Literal["lowers", "raises", "interaction"]
Specificity = Literal["specific", "supportive", "nonspecific"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Source:
    """A citable source: the bibliographic record behind one or more entries."""

    id: str
    citation: str
    evidence_level: str
    url: str | None = None
    doi: str | None = None
    pmid: str | None = None
    terms: str = "cited; facts paraphrased, no text reproduced"
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Parameter:
    """A numeric threshold or constant that a rule uses, with its unit and basis."""

    id: str
    value: float
    unit: str
    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Analyte:
    """A measured substance with what unit conversion needs (molar mass, valence)."""

    id: str
    name: str
    molar_mass_g_mol: float
    valence: int
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LoincCode:
    """A LOINC code that maps to a lab test of the knowledge base."""

    code: str
    display: str
    property: Literal["mass", "moles", "rate", "ratio", "score", "count"]
    note: str | None = None


@dataclass(frozen=True, slots=True)
class LabTest:
    """A laboratory test magstat reads, with its canonical unit and plausible range."""

    id: str
    name: str
    analyte: str | None
    canonical_unit: str
    loinc: tuple[LoincCode, ...]
    text_patterns: tuple[str, ...]
    plausible_low: float
    plausible_high: float
    default_low: float | None
    default_high: float | None
    interval_text: str | None
    limitations: str
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DrugClass:
    """A class of drugs that lowers (or raises, or interacts with) magnesium."""

    id: str
    name: str
    effect: Effect
    mechanism: str
    onset: str
    evidence: str
    weight: Weight | None
    mds_component: Literal["diuretic", "ppi"] | None
    atc_prefixes: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Drug:
    """One drug ingredient, with the codes and names it is recognised by."""

    id: str
    name: str
    classes: tuple[str, ...]
    synonyms: tuple[str, ...]
    rxnorm: tuple[str, ...]
    atc: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition or state that changes magnesium balance."""

    id: str
    name: str
    category: str
    effect: Literal["lowers", "raises", "both"]
    weight: Weight
    what_is_known: str
    evidence: str
    snomed: tuple[str, ...]
    icd10: tuple[str, ...]
    synonyms: tuple[str, ...]
    sources: tuple[str, ...]
    lasting: bool = False
    """Its effect outlasts the event (an operation, an inherited tubulopathy): named in the past
    ("status post gastric bypass", "history of small-bowel resection") it is still present.

    .. versionadded:: 0.7.0
    """


@dataclass(frozen=True, slots=True)
class Sign:
    """A symptom or sign, graded by how specific it is for magnesium deficiency."""

    id: str
    name: str
    plain_name: str
    domain: str
    specificity: Specificity
    text: str
    snomed: tuple[str, ...]
    icd10: tuple[str, ...]
    synonyms: tuple[str, ...]
    sources: tuple[str, ...]
    chronic_snomed: tuple[str, ...] = ()
    """Codes of lifelong diagnoses named after the sign (epilepsy for seizure): not the sign."""
    chronic_icd10: tuple[str, ...] = ()
    chronic_names: tuple[str, ...] = ()
    urgent: bool = False
    """Calls for medical care the same day when someone reports it (the self-check's "today")."""


@dataclass(frozen=True, slots=True)
class ContextCategory:
    """One ConText property (negated, historical ...) with its trigger phrases.

    .. versionadded:: 0.2.0
    """

    id: str
    forward: tuple[str, ...]
    backward: tuple[str, ...]
    bidirectional: tuple[str, ...]
    pseudo: tuple[str, ...]
    terminators: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContextLexicon:
    """The ConText trigger lexicon (``context.toml``): scope limit, common terminators, categories.

    .. versionadded:: 0.2.0
    """

    scope_words: int = 12
    terminators: tuple[str, ...] = ()
    categories: Mapping[str, ContextCategory] = field(default_factory=dict)
    note: str | None = None
    sources: tuple[str, ...] = ()


CONTEXT_CATEGORIES = ("negated", "historical", "hypothetical", "family")
"""The ConText properties magstat reads (``context.toml`` must define each, and no other)."""


@dataclass(frozen=True, slots=True)
class DriRow:
    """Dietary reference intakes of one life stage (ages in years, upper bound exclusive)."""

    id: str
    sex: Literal["female", "male", "any"]
    age_min: float
    age_max: float
    state: Literal["none", "pregnancy", "lactation"]
    rda_mg: float
    is_ai: bool
    ear_mg: float | None
    ul_supplemental_mg: float | None
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Supplement:
    """A magnesium salt or product form, with its elemental content and absorption evidence."""

    id: str
    name: str
    route: Literal["oral", "transdermal", "parenteral"]
    elemental_percent: float | None
    counts_toward_intake: bool
    absorption: str
    synonyms: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Food:
    """A magnesium-rich food for the short food-frequency estimate of intake."""

    id: str
    name: str
    serving: str
    mg_per_serving: float
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Interaction:
    """How a magnesium product interacts with a drug, and the spacing advised."""

    id: str
    name: str
    drugs: tuple[str, ...]
    classes: tuple[str, ...]
    effect: str
    advice: str
    sources: tuple[str, ...]
    check_mg: bool = False
    """The advice includes a magnesium check, so the row applies whenever the drug is current,
    not only when magnesium is given."""


@dataclass(frozen=True, slots=True)
class OutcomeEvidence:
    """One piece of evidence for an outcome domain, with its effect size."""

    text: str
    effect: str
    strength: str
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutcomeDomain:
    """An outcome domain and what makes it relevant to a patient."""

    id: str
    name: str
    summary: str
    condition_triggers: tuple[str, ...]
    sign_triggers: tuple[str, ...]
    evidence: tuple[OutcomeEvidence, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RiskOutcome:
    """The outcome a FHIR ``RiskAssessment`` prediction is about, coded where a verified code exists.

    .. versionadded:: 0.2.0
    """

    id: str
    text: str
    system: str | None
    code: str | None
    display: str | None
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RiskPrediction:
    """How one magstat status is written as a prediction: its outcome and qualitative probability.

    ``probability`` is a code of the HL7 risk-probability code system other than ``certain``,
    or ``None`` when the status knows too little to give one.

    .. versionadded:: 0.2.0
    """

    status: str
    outcome: str
    probability: str | None
    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RiskTables:
    """``risk.toml``: the outcomes and the prediction of every status, for FHIR ``RiskAssessment``.

    .. versionadded:: 0.2.0
    """

    probability_system: str = ""
    outcomes: Mapping[str, RiskOutcome] = field(default_factory=dict)
    statuses: Mapping[str, RiskPrediction] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


RISK_STATUSES = ("excess", "deficient", "likely_deficient", "at_risk", "unlikely", "indeterminate")
"""The statuses ``risk.toml`` must map, each once (the statuses of ``magstat.core.result``)."""

RISK_PROBABILITIES = ("negligible", "low", "moderate", "high")
"""The risk-probability codes a prediction may carry: ``certain`` is refused (decision support)."""


@dataclass(frozen=True, slots=True)
class Statement:
    """A cited piece of guidance: a next step, a safety note or a limitation."""

    id: str
    kind: Literal["next_step", "safety", "limitation", "explanation"]
    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    """The whole knowledge base: versioned, hashed, every entry cited."""

    version: str
    sha256: str
    released: str
    sources: Mapping[str, Source]
    parameters: Mapping[str, Parameter]
    analytes: Mapping[str, Analyte]
    tests: Mapping[str, LabTest]
    drug_classes: Mapping[str, DrugClass]
    drugs: Mapping[str, Drug]
    conditions: Mapping[str, Condition]
    signs: Mapping[str, Sign]
    dri: tuple[DriRow, ...]
    supplements: Mapping[str, Supplement]
    foods: Mapping[str, Food]
    interactions: tuple[Interaction, ...]
    outcomes: Mapping[str, OutcomeDomain]
    statements: Mapping[str, Statement]
    history: tuple[Mapping[str, str], ...] = field(default=())
    context: ContextLexicon = field(default_factory=ContextLexicon)
    risk: RiskTables = field(default_factory=RiskTables)
    views: Mapping[str, str] = field(default_factory=dict)
    """The shipped SQL on FHIR ViewDefinitions (``views/<name>.json``): name -> JSON text."""

    def param(self, param_id: str) -> float:
        """Return the value of parameter ``param_id``.

        Raises:
            KnowledgeBaseError: the parameter is not defined.

        """
        try:
            return self.parameters[param_id].value
        except KeyError:
            raise KnowledgeBaseError(f"parameter {param_id!r} is not defined") from None

    def statement(self, statement_id: str) -> Statement:
        """Return statement ``statement_id``.

        Raises:
            KnowledgeBaseError: the statement is not defined.

        """
        try:
            return self.statements[statement_id]
        except KeyError:
            raise KnowledgeBaseError(f"statement {statement_id!r} is not defined") from None

    def entry(self, entry_id: str) -> object:
        """Find any entry or source by id (for ``magstat kb cite``); ``None`` if absent."""
        for table in (
            self.sources,
            self.parameters,
            self.analytes,
            self.tests,
            self.drug_classes,
            self.drugs,
            self.conditions,
            self.signs,
            self.supplements,
            self.foods,
            self.outcomes,
            self.statements,
        ):
            if entry_id in table:
                return table[entry_id]
        rows: tuple[DriRow | Interaction, ...] = (*self.dri, *self.interactions)
        for row in rows:
            if row.id == entry_id:
                return row
        return None


# --------------------------------------------------------------------------------------------
# Reading


class _Entry:
    """Reads one TOML table, remembering which keys were used so that extra keys are refused."""

    def __init__(self, where: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise KnowledgeBaseError(f"{where}: expected a table, got {type(data).__name__}")
        self.where = where
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def _get(self, key: str, kind: type | tuple[type, ...], required: bool) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise KnowledgeBaseError(f"{self.where}: missing required key {key!r}")
            return None
        value = self.data[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise KnowledgeBaseError(f"{self.where}.{key}: expected a number, got a boolean")
        if not isinstance(value, kind):
            raise KnowledgeBaseError(
                f"{self.where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__}"
            )
        return value

    def string(self, key: str) -> str:
        value = cast("str", self._get(key, str, True))
        if not value.strip():
            raise KnowledgeBaseError(f"{self.where}.{key}: must not be empty")
        return value

    def opt_str(self, key: str) -> str | None:
        return cast("str | None", self._get(key, str, False))

    def num(self, key: str) -> float:
        return float(self._get(key, (int, float), True))

    def opt_num(self, key: str) -> float | None:
        value = self._get(key, (int, float), False)
        return None if value is None else float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, bool, False)
        return default if value is None else bool(value)

    def strs(self, key: str) -> tuple[str, ...]:
        value = self._get(key, list, False)
        if value is None:
            return ()
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise KnowledgeBaseError(f"{self.where}.{key}[{i}]: expected a non-empty string")
        return tuple(value)

    def choice(self, key: str, allowed: Iterable[str], default: str | None = None) -> str:
        options = tuple(allowed)
        value = self._get(key, str, default is None)
        if value is None:
            assert default is not None
            return default
        if value not in options:
            raise KnowledgeBaseError(f"{self.where}.{key}: {value!r} is not one of {', '.join(options)}")
        return cast("str", value)

    def sources(self) -> tuple[str, ...]:
        ids = self.strs("sources")
        if not ids:
            raise KnowledgeBaseError(f"{self.where}: uncited entry (no 'sources')")
        return ids

    def tables(self, key: str) -> list[_Entry]:
        value = self._get(key, list, False) or []
        return [_Entry(f"{self.where}.{key}[{i}]", item) for i, item in enumerate(value)]

    def done(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise KnowledgeBaseError(f"{self.where}: unknown key(s) {', '.join(extra)}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a number", float: "a number", list: "a list", bool: "true/false"}
    if isinstance(kind, tuple):
        return " or ".join(sorted({names.get(k, k.__name__) for k in kind}))
    return names.get(kind, kind.__name__)


def _entries(
    doc: Mapping[str, Any], file: str, section: str, reader: Callable[[str, _Entry], T]
) -> dict[str, T]:
    """Read ``[section.<id>]`` tables of one file into a dict keyed by id."""
    tables = doc.get(section, {})
    if not isinstance(tables, Mapping):
        raise KnowledgeBaseError(f"{file}: [{section}] must be a table of tables")
    out: dict[str, T] = {}
    for entry_id, data in tables.items():
        entry = _Entry(f"{file}:{section}.{entry_id}", data)
        out[entry_id] = reader(entry_id, entry)
        entry.done()
    return out


def _rows(doc: Mapping[str, Any], file: str, section: str, reader: Callable[[_Entry], T]) -> tuple[T, ...]:
    """Read ``[[section]]`` arrays of tables of one file."""
    rows = doc.get(section, [])
    if not isinstance(rows, list):
        raise KnowledgeBaseError(f"{file}: [[{section}]] must be an array of tables")
    out = []
    for i, data in enumerate(rows):
        entry = _Entry(f"{file}:{section}[{i}]", data)
        out.append(reader(entry))
        entry.done()
    return tuple(out)


def _source(entry_id: str, e: _Entry) -> Source:
    source = Source(
        id=entry_id,
        citation=e.string("citation"),
        evidence_level=e.choice("evidence_level", EVIDENCE_LEVELS),
        url=e.opt_str("url"),
        doi=e.opt_str("doi"),
        pmid=e.opt_str("pmid"),
        terms=e.opt_str("terms") or "cited; facts paraphrased, no text reproduced",
        note=e.opt_str("note"),
    )
    if source.evidence_level != "project-choice" and not (source.url or source.doi or source.pmid):
        raise KnowledgeBaseError(f"{e.where}: a source needs a url, doi or pmid")
    return source


def _parameter(entry_id: str, e: _Entry) -> Parameter:
    return Parameter(entry_id, e.num("value"), e.string("unit"), e.string("text"), e.sources())


def _analyte(entry_id: str, e: _Entry) -> Analyte:
    valence = e.num("valence")
    return Analyte(entry_id, e.string("name"), e.num("molar_mass_g_mol"), int(valence), e.sources())


def _loinc(e: _Entry) -> LoincCode:
    prop = e.choice("property", ("mass", "moles", "rate", "ratio", "score", "count"))
    return LoincCode(e.string("code"), e.string("display"), cast("Any", prop), e.opt_str("note"))


def _test(entry_id: str, e: _Entry) -> LabTest:
    loinc = []
    for sub in e.tables("loinc"):
        loinc.append(_loinc(sub))
        sub.done()
    test = LabTest(
        id=entry_id,
        name=e.string("name"),
        analyte=e.opt_str("analyte"),
        canonical_unit=e.string("canonical_unit"),
        loinc=tuple(loinc),
        text_patterns=e.strs("text_patterns"),
        plausible_low=e.num("plausible_low"),
        plausible_high=e.num("plausible_high"),
        default_low=e.opt_num("default_low"),
        default_high=e.opt_num("default_high"),
        interval_text=e.opt_str("interval_text"),
        limitations=e.string("limitations"),
        sources=e.sources(),
    )
    if test.plausible_low >= test.plausible_high:
        raise KnowledgeBaseError(f"{e.where}: plausible_low must be below plausible_high")
    return test


def _drug_class(entry_id: str, e: _Entry) -> DrugClass:
    weight = e.opt_str("weight")
    if weight not in (None, "major", "minor"):
        raise KnowledgeBaseError(f"{e.where}.weight: {weight!r} is not major or minor")
    mds = e.opt_str("mds_component")
    if mds not in (None, "diuretic", "ppi"):
        raise KnowledgeBaseError(f"{e.where}.mds_component: {mds!r} is not diuretic or ppi")
    return DrugClass(
        id=entry_id,
        name=e.string("name"),
        effect=cast("Any", e.choice("effect", ("lowers", "raises", "interaction"))),
        mechanism=e.string("mechanism"),
        onset=e.opt_str("onset") or "not established in the cited sources",
        evidence=e.string("evidence"),
        weight=cast("Any", weight),
        mds_component=cast("Any", mds),
        atc_prefixes=e.strs("atc_prefixes"),
        sources=e.sources(),
    )


def _drug(entry_id: str, e: _Entry) -> Drug:
    return Drug(
        id=entry_id,
        name=e.string("name"),
        classes=e.strs("classes"),
        synonyms=e.strs("synonyms"),
        rxnorm=e.strs("rxnorm"),
        atc=e.strs("atc"),
        sources=e.sources(),
    )


def _condition(entry_id: str, e: _Entry) -> Condition:
    return Condition(
        id=entry_id,
        name=e.string("name"),
        category=e.string("category"),
        effect=cast("Any", e.choice("effect", ("lowers", "raises", "both"))),
        weight=cast("Any", e.choice("weight", ("major", "minor"))),
        what_is_known=e.string("what_is_known"),
        evidence=e.string("evidence"),
        snomed=e.strs("snomed"),
        icd10=e.strs("icd10"),
        synonyms=e.strs("synonyms"),
        sources=e.sources(),
        lasting=e.boolean("lasting", False),
    )


def _sign(entry_id: str, e: _Entry) -> Sign:
    return Sign(
        id=entry_id,
        name=e.string("name"),
        plain_name=e.string("plain_name"),
        domain=e.string("domain"),
        specificity=cast("Any", e.choice("specificity", ("specific", "supportive", "nonspecific"))),
        text=e.string("text"),
        snomed=e.strs("snomed"),
        icd10=e.strs("icd10"),
        synonyms=e.strs("synonyms"),
        sources=e.sources(),
        chronic_snomed=e.strs("chronic_snomed"),
        chronic_icd10=e.strs("chronic_icd10"),
        chronic_names=e.strs("chronic_names"),
        urgent=e.boolean("urgent", False),
    )


def _context(doc: Mapping[str, Any]) -> ContextLexicon:
    settings = _Entry("context.toml:settings", doc.get("settings", {}))
    scope = settings.num("scope_words")
    if scope < 1 or scope != int(scope):
        raise KnowledgeBaseError("context.toml:settings.scope_words: must be a whole number of at least 1")
    terminators = settings.strs("terminators")
    note = settings.opt_str("note")
    sources = settings.sources()
    settings.done()

    def category(entry_id: str, e: _Entry) -> ContextCategory:
        return ContextCategory(
            id=entry_id,
            forward=e.strs("forward"),
            backward=e.strs("backward"),
            bidirectional=e.strs("bidirectional"),
            pseudo=e.strs("pseudo"),
            terminators=e.strs("terminators"),
            sources=e.sources(),
        )

    categories = _entries(doc, "context.toml", "categories", category)
    if sorted(categories) != sorted(CONTEXT_CATEGORIES):
        raise KnowledgeBaseError(
            f"context.toml: categories must be {', '.join(CONTEXT_CATEGORIES)}; got {', '.join(sorted(categories))}"
        )
    return ContextLexicon(int(scope), terminators, categories, note, sources)


def _risk(doc: Mapping[str, Any]) -> RiskTables:
    settings = _Entry("risk.toml:settings", doc.get("settings", {}))
    system = settings.string("probability_system")
    sources = settings.sources()
    settings.done()

    def outcome(entry_id: str, e: _Entry) -> RiskOutcome:
        coded = (e.opt_str("system"), e.opt_str("code"), e.opt_str("display"))
        if any(coded) and not all(coded):
            raise KnowledgeBaseError(f"{e.where}: system, code and display go together (all or none)")
        return RiskOutcome(entry_id, e.string("text"), *coded, e.sources())

    def prediction(entry_id: str, e: _Entry) -> RiskPrediction:
        probability = e.opt_str("probability")
        if probability is not None and probability not in RISK_PROBABILITIES:
            raise KnowledgeBaseError(
                f"{e.where}.probability: {probability!r} is not one of {', '.join(RISK_PROBABILITIES)} "
                "(decision support never states an outcome as certain)"
            )
        return RiskPrediction(entry_id, e.string("outcome"), probability, e.string("text"), e.sources())

    outcomes = _entries(doc, "risk.toml", "outcomes", outcome)
    statuses = _entries(doc, "risk.toml", "statuses", prediction)
    if sorted(statuses) != sorted(RISK_STATUSES):
        raise KnowledgeBaseError(
            f"risk.toml: statuses must be {', '.join(RISK_STATUSES)}; got {', '.join(sorted(statuses))}"
        )
    for row in statuses.values():
        if row.outcome not in outcomes:
            raise KnowledgeBaseError(f"risk.toml:statuses.{row.status}: unknown outcome {row.outcome!r}")
    return RiskTables(system, outcomes, statuses, sources)


def _dri(e: _Entry) -> DriRow:
    row = DriRow(
        id=e.string("id"),
        sex=cast("Any", e.choice("sex", ("female", "male", "any"))),
        age_min=e.num("age_min"),
        age_max=e.num("age_max"),
        state=cast("Any", e.choice("state", ("none", "pregnancy", "lactation"), "none")),
        rda_mg=e.num("rda_mg"),
        is_ai=e.boolean("is_ai", False),
        ear_mg=e.opt_num("ear_mg"),
        ul_supplemental_mg=e.opt_num("ul_supplemental_mg"),
        sources=e.sources(),
    )
    if row.age_min >= row.age_max:
        raise KnowledgeBaseError(f"{e.where}: age_min must be below age_max")
    return row


def _supplement(entry_id: str, e: _Entry) -> Supplement:
    percent = e.opt_num("elemental_percent")
    if percent is not None and not 0 < percent <= 100:
        raise KnowledgeBaseError(f"{e.where}.elemental_percent: must be in (0, 100]")
    return Supplement(
        id=entry_id,
        name=e.string("name"),
        route=cast("Any", e.choice("route", ("oral", "transdermal", "parenteral"))),
        elemental_percent=percent,
        counts_toward_intake=e.boolean("counts_toward_intake", True),
        absorption=e.string("absorption"),
        synonyms=e.strs("synonyms"),
        sources=e.sources(),
    )


def _food(entry_id: str, e: _Entry) -> Food:
    return Food(entry_id, e.string("name"), e.string("serving"), e.num("mg_per_serving"), e.sources())


def _interaction(e: _Entry) -> Interaction:
    return Interaction(
        id=e.string("id"),
        name=e.string("name"),
        drugs=e.strs("drugs"),
        classes=e.strs("classes"),
        effect=e.string("effect"),
        advice=e.string("advice"),
        sources=e.sources(),
        check_mg=e.boolean("check_mg", False),
    )


def _outcome(entry_id: str, e: _Entry) -> OutcomeDomain:
    evidence = []
    for sub in e.tables("evidence"):
        evidence.append(
            OutcomeEvidence(sub.string("text"), sub.string("effect"), sub.string("strength"), sub.sources())
        )
        sub.done()
    return OutcomeDomain(
        id=entry_id,
        name=e.string("name"),
        summary=e.string("summary"),
        condition_triggers=e.strs("condition_triggers"),
        sign_triggers=e.strs("sign_triggers"),
        evidence=tuple(evidence),
        sources=e.sources(),
    )


def _statement(entry_id: str, e: _Entry) -> Statement:
    kinds = ("next_step", "safety", "limitation", "explanation")
    return Statement(entry_id, cast("Any", e.choice("kind", kinds)), e.string("text"), e.sources())


VIEWS_PREFIX = "views/"
"""Raw names of the view files: ``views/<name>.json`` (hashed with the TOML files)."""

FILES = (
    "manifest.toml",
    "sources.toml",
    "parameters.toml",
    "tests.toml",
    "drugs.toml",
    "conditions.toml",
    "signs.toml",
    "nutrition.toml",
    "interactions.toml",
    "outcomes.toml",
    "statements.toml",
    "context.toml",
    "risk.toml",
)


def build(documents: Mapping[str, Mapping[str, Any]], raw: Mapping[str, bytes]) -> KnowledgeBase:
    """Build and check a knowledge base from parsed TOML documents.

    Args:
        documents: file name -> parsed TOML, for every name in :data:`FILES`.
        raw: file name -> the file's bytes, hashed into ``KnowledgeBase.sha256``.

    Returns:
        The checked knowledge base.

    Raises:
        KnowledgeBaseError: a file is missing, or an entry is malformed, uncited or refers to
            an id that does not exist.

    """
    missing = [name for name in FILES if name not in documents]
    if missing:
        raise KnowledgeBaseError(f"knowledge base files missing: {', '.join(missing)}")
    unknown = sorted(set(documents) - set(FILES))
    if unknown:
        raise KnowledgeBaseError(f"unknown knowledge base files: {', '.join(unknown)}")

    manifest = _Entry("manifest.toml", documents["manifest.toml"])
    version = manifest.string("kb_version")
    released = manifest.string("released")
    history = []
    for row in manifest.tables("history"):
        history.append(
            {"version": row.string("version"), "date": row.string("date"), "changes": row.string("changes")}
        )
        row.done()
    manifest.done()
    if not history or history[-1]["version"] != version:
        raise KnowledgeBaseError("manifest.toml: the last [[history]] entry must be kb_version")

    def doc(name: str, *sections: str) -> Mapping[str, Any]:
        data = documents[name]
        extra = sorted(set(data) - set(sections))
        if extra:
            raise KnowledgeBaseError(f"{name}: unknown section(s) {', '.join(extra)}")
        return data

    sources = _entries(doc("sources.toml", "sources"), "sources.toml", "sources", _source)
    # The view files (``views/<name>.json``) are hashed after the TOML files, by name.
    view_files = sorted(name for name in raw if name.startswith(VIEWS_PREFIX) and name.endswith(".json"))
    hashed = [*FILES, *view_files]
    views = {}
    for name in view_files:
        try:
            views[name[len(VIEWS_PREFIX) : -len(".json")]] = raw[name].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise KnowledgeBaseError(f"{name}: not UTF-8: {exc}") from exc
    d = doc("nutrition.toml", "dri", "supplements", "foods")
    kb = KnowledgeBase(
        version=version,
        sha256=hashlib.sha256(b"".join(name.encode() + b"\0" + raw[name] for name in hashed)).hexdigest(),
        released=released,
        sources=sources,
        parameters=_entries(
            doc("parameters.toml", "parameters"), "parameters.toml", "parameters", _parameter
        ),
        analytes=_entries(doc("tests.toml", "analytes", "tests"), "tests.toml", "analytes", _analyte),
        tests=_entries(doc("tests.toml", "analytes", "tests"), "tests.toml", "tests", _test),
        drug_classes=_entries(doc("drugs.toml", "classes", "drugs"), "drugs.toml", "classes", _drug_class),
        drugs=_entries(doc("drugs.toml", "classes", "drugs"), "drugs.toml", "drugs", _drug),
        conditions=_entries(
            doc("conditions.toml", "conditions"), "conditions.toml", "conditions", _condition
        ),
        signs=_entries(doc("signs.toml", "signs"), "signs.toml", "signs", _sign),
        dri=_rows(d, "nutrition.toml", "dri", _dri),
        supplements=_entries(d, "nutrition.toml", "supplements", _supplement),
        foods=_entries(d, "nutrition.toml", "foods", _food),
        interactions=_rows(
            doc("interactions.toml", "interactions"), "interactions.toml", "interactions", _interaction
        ),
        outcomes=_entries(doc("outcomes.toml", "outcomes"), "outcomes.toml", "outcomes", _outcome),
        statements=_entries(
            doc("statements.toml", "statements"), "statements.toml", "statements", _statement
        ),
        history=tuple(history),
        context=_context(doc("context.toml", "settings", "categories")),
        risk=_risk(doc("risk.toml", "settings", "outcomes", "statuses")),
        views=views,
    )
    _check_references(kb)
    return kb


def _check_references(kb: KnowledgeBase) -> None:
    """Every source id and every cross-reference must resolve; ids must be unique."""
    cited: list[tuple[str, tuple[str, ...]]] = []
    for table in (
        kb.parameters,
        kb.analytes,
        kb.tests,
        kb.drug_classes,
        kb.drugs,
        kb.conditions,
        kb.signs,
        kb.supplements,
        kb.foods,
        kb.outcomes,
        kb.statements,
    ):
        cited.extend((f"{type(v).__name__} {k}", v.sources) for k, v in table.items())
    cited.extend((f"DriRow {r.id}", r.sources) for r in kb.dri)
    cited.extend((f"Interaction {r.id}", r.sources) for r in kb.interactions)
    for outcome in kb.outcomes.values():
        cited.extend((f"OutcomeDomain {outcome.id} evidence", ev.sources) for ev in outcome.evidence)
    cited.append(("context.toml settings", kb.context.sources))
    cited.extend((f"ContextCategory {k}", v.sources) for k, v in kb.context.categories.items())
    cited.append(("risk.toml settings", kb.risk.sources))
    cited.extend((f"RiskOutcome {k}", v.sources) for k, v in kb.risk.outcomes.items())
    cited.extend((f"RiskPrediction {k}", v.sources) for k, v in kb.risk.statuses.items())
    for where, ids in cited:
        for source_id in ids:
            if source_id not in kb.sources:
                raise KnowledgeBaseError(f"{where}: source {source_id!r} is not in sources.toml")

    def must_exist(where: str, ids: Iterable[str], table: Mapping[str, object], what: str) -> None:
        for item in ids:
            if item not in table:
                raise KnowledgeBaseError(f"{where}: unknown {what} {item!r}")

    for test in kb.tests.values():
        if test.analyte is not None:
            must_exist(f"test {test.id}", [test.analyte], kb.analytes, "analyte")
    for drug in kb.drugs.values():
        if not drug.classes:
            raise KnowledgeBaseError(f"drug {drug.id}: names no class")
        must_exist(f"drug {drug.id}", drug.classes, kb.drug_classes, "drug class")
    for row in kb.interactions:
        must_exist(f"interaction {row.id}", row.drugs, kb.drugs, "drug")
        must_exist(f"interaction {row.id}", row.classes, kb.drug_classes, "drug class")
    for outcome in kb.outcomes.values():
        must_exist(f"outcome {outcome.id}", outcome.condition_triggers, kb.conditions, "condition")
        must_exist(f"outcome {outcome.id}", outcome.sign_triggers, kb.signs, "sign")
    row_ids = [r.id for r in kb.dri] + [r.id for r in kb.interactions]
    if len(row_ids) != len(set(row_ids)):
        raise KnowledgeBaseError("duplicate ids among [[dri]] or [[interactions]] rows")
    loinc_seen: dict[str, str] = {}
    for test in kb.tests.values():
        for code in test.loinc:
            if code.code in loinc_seen:
                raise KnowledgeBaseError(
                    f"LOINC {code.code} is mapped to both {loinc_seen[code.code]} and {test.id}"
                )
            loinc_seen[code.code] = test.id
