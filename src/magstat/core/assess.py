"""``assess(facts, kb) -> Assessment``: the one implementation of magstat's rules.

The assessment runs in fixed steps, each leaving findings that show its basis:

1. check the facts (implausible input is refused, never interpreted);
2. pick the current results (the most recent at or before the as-of date, and recent);
3. calculators: serum Mg bands and CTCAE grade, eGFR, MDS, FEMg, loading test, intake, UL;
4. risk factors and signs from medications, conditions, alcohol, age, diet and labs;
5. the status, by the precedence rule in :func:`_decide` (monotone: a worse input never
   gives a status that points less to a deficit);
6. next steps, safety, outcome-domain relevance and limitations.

Pure: no I/O, no clock, no environment. The same facts and knowledge base give the same
assessment, byte for byte.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from magstat.core import calculators as calc
from magstat.core.facts import Lab, Medication, PatientFacts, SignFact
from magstat.core.match import match_supplement
from magstat.core.result import (
    Action,
    Assessment,
    EgfrResult,
    FemgResult,
    Finding,
    InputUsed,
    IntakeResult,
    LoadingResult,
    MdsResult,
    Relevance,
    SerumMagnesium,
    Status,
    SupplementResult,
)
from magstat.core.validate import check_facts
from magstat.kb.cache import per_kb
from magstat.kb.schema import KnowledgeBase

__all__ = ["assess"]

_MDS_MAX = {"diuretic": 1, "ppi": 1, "kidney": 2, "alcohol": 1}

# Signs whose presence means a deficit is symptomatic (route: IV), per S54.
_SYMPTOMATIC_SIGNS = ("tetany", "seizure", "arrhythmia", "torsades_de_pointes")
_ECG_SIGNS = ("arrhythmia", "qt_prolongation", "torsades_de_pointes")
# Low potassium or calcium: with a low or low-normal magnesium they add to the risk of
# torsades de pointes (S341, S346); refractory forms point to the IV route (S54, S63).
_LOW_K_CA_SIGNS = ("hypokalaemia", "hypocalcaemia", "refractory_hypokalaemia", "refractory_hypocalcaemia")
_REFRACTORY_SIGNS = ("refractory_hypokalaemia", "refractory_hypocalcaemia")
# Routes and recorded indications that show magnesium is given as treatment (S56, S60, S61):
# parenteral magnesium sulfate for (pre-)eclampsia, tocolysis, torsades or severe asthma.
_PARENTERAL_ROUTES = ("intravenous", "intramuscular")
_MG_THERAPY_INDICATIONS = ("eclampsia", "tocoly", "preterm labo", "torsade", "asthma")
# Tests for which the higher of two conflicting same-day results is the safer reading (it
# gives the lower kidney function); for the others the lower reading is the safer one.
_HIGHER_IS_SAFER = ("serum_creatinine",)
_CANCER_THERAPY_CLASSES = ("platinum", "anti_egfr_antibody", "calcineurin_inhibitor")


def _fmt(value: float, digits: int = 2) -> str:
    """Round for display and drop trailing zeros (0.70 -> 0.7, 60.0 -> 60)."""
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _sentence(text: str) -> str:
    """Capitalise the first letter only (units like mmol/L keep their case) and end with a stop."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _lab_input(name: str, lab: Lab) -> InputUsed:
    return InputUsed(
        name=name,
        value=round(lab.value, 4),
        unit=lab.unit,
        date=lab.when,
        source=lab.origin.resource,
        matched_by=lab.origin.matched_by,
    )


@dataclass
class _Work:
    """Mutable scratch space of one assessment (never leaves this module)."""

    facts: PatientFacts
    kb: KnowledgeBase
    age: float | None = None
    latest: dict[str, Lab] = field(default_factory=dict)
    stale: dict[str, Lab] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    next_steps: dict[str, Action] = field(default_factory=dict)
    safety: dict[str, Action] = field(default_factory=dict)
    limitations: dict[str, Action] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    major: list[str] = field(default_factory=list)
    minor: list[str] = field(default_factory=list)
    specific_signs: list[str] = field(default_factory=list)
    supportive_signs: list[str] = field(default_factory=list)
    present_signs: set[str] = field(default_factory=set)
    current_conditions: set[str] = field(default_factory=set)
    current_classes: dict[str, list[Medication]] = field(default_factory=dict)
    low_markers: list[str] = field(default_factory=list)
    alcohol_proxy: bool = False
    mg_history: list[tuple[date | None, float]] = field(default_factory=list)
    refuted_signs: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, list[Lab]] = field(default_factory=dict)
    mg_therapy: list[Medication] = field(default_factory=list)
    severity_reason: str | None = None

    def find(self, finding: Finding) -> None:
        self.findings.append(finding)

    def step(
        self, statement_id: str, reason: str, priority: Literal["urgent", "high", "routine"] = "routine"
    ) -> None:
        self._act(self.next_steps, statement_id, reason, priority)

    def safe(
        self, statement_id: str, reason: str, priority: Literal["urgent", "high", "routine"] = "routine"
    ) -> None:
        self._act(self.safety, statement_id, reason, priority)

    def limit(self, statement_id: str, reason: str) -> None:
        self._act(self.limitations, statement_id, reason, "routine")

    def _act(
        self,
        table: dict[str, Action],
        statement_id: str,
        reason: str,
        priority: Literal["urgent", "high", "routine"],
    ) -> None:
        rank = {"urgent": 0, "high": 1, "routine": 2}
        old = table.get(statement_id)
        if old is not None:
            if rank[priority] < rank[old.priority]:
                table[statement_id] = Action(old.id, old.text, old.reason, old.sources, priority)
            return
        statement = self.kb.statement(statement_id)
        table[statement_id] = Action(statement_id, statement.text, reason, statement.sources, priority)


# --------------------------------------------------------------------------------------------


def assess(facts: PatientFacts, kb: KnowledgeBase) -> Assessment:
    """Assess a patient's magnesium status from what is known.

    Args:
        facts: what is known about the patient, in canonical units (see
            :class:`magstat.core.facts.PatientFacts`).
        kb: the knowledge base (``magstat.kb.load()``).

    Returns:
        The explained assessment. Its status is one of ``excess``, ``deficient``,
        ``likely_deficient``, ``at_risk``, ``unlikely``, ``indeterminate``.

    Raises:
        InvalidInputError: the facts contain a value that must not be interpreted
            (implausible, wrong unit, unknown id, birth date after the as-of date).

    .. versionadded:: 0.1.0

    """
    check_facts(facts, kb)
    w = _Work(facts, kb)
    w.age = _age(facts)
    if _died(facts):
        return _deceased(facts, kb, w.age)
    _select_labs(w)
    serum = _serum(w)
    egfr = _egfr(w)
    _medications(w)
    _conditions(w)
    mds = _mds(w, egfr)
    femg = _femg(w, serum)
    _urine_24h(w, serum)
    loading = _loading(w, egfr, femg)
    _other_markers(w)
    _signs(w)
    _alcohol_and_lifestyle(w)
    intake = _intake(w)
    supplements = _supplements(w)
    status, severity, basis = _decide(w, serum, mds)
    w.find(basis)
    _next_steps(w, status, serum, egfr, femg)
    _safety(w, status, serum, egfr, supplements)
    relevance = _relevance(w, mds)
    _limitations(w, serum, mds, egfr)
    summary = _summary(status, severity, serum, mds, w)
    cited: set[str] = set()
    for f in w.findings:
        cited.update(f.sources)
    for table in (w.next_steps, w.safety, w.limitations):
        for a in table.values():
            cited.update(a.sources)
    for r in relevance:
        cited.update(r.sources)
    for part in (
        mds.sources,
        egfr.sources,
        femg.sources,
        loading.sources,
        intake.sources,
        supplements.sources,
    ):
        cited.update(part)
    # Unrecognised entries that may be current (not those known to be stopped or resolved),
    # each text once: a clinician should see what magstat could not read.
    unrecognised = tuple(
        dict.fromkeys(
            [
                f"medication: {m.text}"
                for m in facts.medications or ()
                if not m.drugs
                and m.current is not False
                and m.text not in {s.text for s in facts.supplements or ()}  # read as a supplement
            ]
            + [
                f"condition: {c.text}"
                for c in facts.conditions or ()
                if c.condition is None and c.current is not False and not c.signs
            ]
        )
    )
    return Assessment(
        status=status,
        severity=severity,
        summary=summary,
        as_of=facts.as_of,
        patient_id=facts.patient_id,
        age_years=w.age,
        sex=facts.sex,
        mds=mds,
        egfr=egfr,
        serum_magnesium=serum,
        femg=femg,
        loading_test=loading,
        intake=intake,
        supplements=supplements,
        findings=tuple(w.findings),
        next_steps=_ordered(w.next_steps),
        safety=_ordered(w.safety),
        relevance=relevance,
        limitations=tuple(w.limitations.values()),
        missing_inputs=tuple(w.missing),
        unrecognised=unrecognised,
        excluded=facts.excluded,
        kb_version=kb.version,
        kb_sha256=kb.sha256,
        sources=tuple(sorted(cited)),
        severity_reason=w.severity_reason,
    )


def _ordered(table: dict[str, Action]) -> tuple[Action, ...]:
    rank = {"urgent": 0, "high": 1, "routine": 2}
    return tuple(sorted(table.values(), key=lambda a: rank[a.priority]))


def _died(facts: PatientFacts) -> bool:
    """Whether the patient had died by the as-of date (a later date of death does not count)."""
    return facts.deceased is True and (facts.deceased_date is None or facts.deceased_date <= facts.as_of)


def _deceased(facts: PatientFacts, kb: KnowledgeBase, age: float | None) -> Assessment:
    """The answer for a patient who has died: not assessed, no next steps, no advice."""
    when = facts.deceased_date
    on = f" on {when.isoformat()}" if when else ""
    finding = Finding(
        id="patient.deceased",
        category="status",
        text=(
            f"Deceased{on}. magstat does not assess a patient who has died: no magnesium status, next steps, "
            "treatment or safety advice are given."
        ),
        weight="info",
        rule="a patient whose record says deceased at or before the as-of date is not assessed as living",
        inputs=(
            InputUsed(
                "deceased",
                when.isoformat() if when else True,
                date=when,
                source=f"Patient/{facts.patient_id}" if facts.patient_id else "patient",
                matched_by="deceasedDateTime" if when else "deceasedBoolean",
            ),
        ),
        sources=("S304",),
    )
    none = SerumMagnesium(mmol_l=None)
    return Assessment(
        status="indeterminate",
        severity=None,
        summary=f"Deceased{on}: not assessed.",
        as_of=facts.as_of,
        patient_id=facts.patient_id,
        age_years=age,
        sex=facts.sex,
        mds=MdsResult(None, False, None, dict.fromkeys(_MDS_MAX), None, ()),
        egfr=EgfrResult(None, None, None, None),
        serum_magnesium=none,
        femg=FemgResult(None, None),
        loading_test=LoadingResult(None, None, None),
        intake=IntakeResult(None, None, None, None, None, False, None, None),
        supplements=SupplementResult(None, None, None),
        findings=(finding,),
        next_steps=(),
        safety=(),
        relevance=(),
        limitations=(),
        missing_inputs=(),
        unrecognised=(),
        excluded=facts.excluded,
        kb_version=kb.version,
        kb_sha256=kb.sha256,
        sources=("S304",),
        deceased=True,
        deceased_date=when,
    )


def _age(facts: PatientFacts) -> float | None:
    """Age at the as-of date, or at death when the patient died before it."""
    if facts.birth_date is not None:
        at = facts.as_of
        if _died(facts) and facts.deceased_date is not None:
            at = max(facts.deceased_date, facts.birth_date)
        days = (at - facts.birth_date).days
        years = (
            at.year
            - facts.birth_date.year
            - ((at.month, at.day) < (facts.birth_date.month, facts.birth_date.day))
        )
        # Whole years, plus the fraction of the current year of age, for life-stage lookups.
        return years + (days % 365.2425) / 365.2425 if years >= 0 else 0.0
    return facts.age_years


# --------------------------------------------------------------------------------------------
# Step 2: current results


def _select_labs(w: _Work) -> None:
    """Keep, per test, the most recent result at or before the as-of date.

    A result without a date counts as taken on the as-of date (patient documents often carry
    none). A dated result older than ``labs.recent_days`` is kept aside as stale: shown, not
    used for the status.
    """
    recent_days = w.kb.param("labs.recent_days")
    as_of = w.facts.as_of
    best: dict[str, tuple[date, int, Lab]] = {}
    for i, lab in enumerate(w.facts.labs):
        when = lab.when or as_of
        if when > as_of:
            continue
        if lab.test == "serum_mg":
            w.mg_history.append((lab.when, lab.value))
        key = (when, i)
        old = best.get(lab.test)
        if old is not None and when == old[0] and lab.when is not None and old[2].when is not None:
            # Two results of one test on the same date: not silently one or the other. Keep the
            # reading that is safer for advice and say so (see _conflict_finding).
            if abs(lab.value - old[2].value) > 1e-9:
                seen = w.conflicts.setdefault(lab.test, [old[2]])
                seen.append(lab)
                higher = lab.test in _HIGHER_IS_SAFER
                safer = lab.value > old[2].value if higher else lab.value < old[2].value
                if safer:
                    best[lab.test] = (when, i, lab)
            continue
        if old is None or key > (old[0], old[1]):
            best[lab.test] = (when, i, lab)
            w.conflicts.pop(lab.test, None)  # a newer date: earlier disagreements no longer matter
    for test, labs in w.conflicts.items():
        if best[test][2] in labs:
            _conflict_finding(w, test, labs, best[test][2])
    for test, (when, _i, lab) in best.items():
        if (as_of - when).days > recent_days:
            w.stale[test] = lab
        else:
            w.latest[test] = lab


def _conflict_finding(w: _Work, test: str, labs: list[Lab], chosen: Lab) -> None:
    """Flag same-date results of one test that disagree, and show which one was used."""
    kb = w.kb
    name = kb.tests[test].name if test in kb.tests else test
    values = ", ".join(f"{_fmt(lab.value, 2)} {lab.unit}" for lab in labs)
    direction = "higher" if test in _HIGHER_IS_SAFER else "lower"
    w.find(
        Finding(
            id=f"conflict.{test}",
            category="test",
            text=(
                f"Conflicting {name} results on {chosen.when.isoformat() if chosen.when else 'the same date'}: "
                f"{values}. The {direction} value ({_fmt(chosen.value, 2)} {chosen.unit}) was used, as the "
                "safer reading for advice; repeat the test to settle it."
            ),
            weight="info",
            rule=f"same test, same date, different values → flagged; the {direction} value is used (the safer reading)",
            inputs=tuple(_lab_input(name, lab) for lab in labs),
            sources=kb.statement("lim.conflicting_results").sources,
        )
    )
    w.limit("lim.conflicting_results", f"Conflicting {name} results on the same date.")


# --------------------------------------------------------------------------------------------
# Step 3: calculators


def _serum(w: _Work) -> SerumMagnesium:
    kb = w.kb
    test = kb.tests["serum_mg"]
    history = tuple(sorted(w.mg_history, key=lambda item: item[0] or w.facts.as_of))
    lab = w.latest.get("serum_mg")
    stale = w.stale.get("serum_mg")
    if lab is None:
        if stale is not None:
            w.find(
                Finding(
                    id="serum_mg.not_recent",
                    category="serum_magnesium",
                    text=(
                        f"The last serum magnesium ({_fmt(stale.value, 2)} mmol/L on "
                        f"{stale.when.isoformat() if stale.when else 'an unknown date'}) is older than "
                        f"{kb.param('labs.recent_days'):.0f} days before the as-of date, so it is shown "
                        "but not used."
                    ),
                    weight="info",
                    rule=f"results older than labs.recent_days ({kb.param('labs.recent_days'):.0f} days) are not current",
                    inputs=(_lab_input("serum magnesium", stale),),
                    sources=kb.parameters["labs.recent_days"].sources,
                )
            )
            w.limit("lim.old_result", "The most recent serum magnesium is not recent.")
            return SerumMagnesium(
                mmol_l=stale.value,
                mg_dl=calc.mg_mmol_to_mg_dl(kb, stale.value),
                meq_l=calc.mg_mmol_to_meq(kb, stale.value),
                date=stale.when,
                current=False,
                source=stale.origin.resource,
                history=history,
            )
        w.missing.append("serum_mg")
        return SerumMagnesium(mmol_l=None, history=history)

    low = lab.ref_low if lab.ref_low is not None else test.default_low
    high = lab.ref_high if lab.ref_high is not None else test.default_high
    interval_from: Literal["lab", "default"] = (
        "lab" if lab.ref_low is not None and lab.ref_high is not None else "default"
    )
    evidence_lower = kb.param("serum_mg.evidence_lower")
    value = lab.value
    band: Literal["below_lab_range", "low_normal", "normal", "above_lab_range"]
    grade: int | None = None
    if low is not None and value < low:
        band = "below_lab_range"
        grade = 1
        for g, key in (
            (2, "ctcae_hypo_grade2_below"),
            (3, "ctcae_hypo_grade3_below"),
            (4, "ctcae_hypo_grade4_below"),
        ):
            if value < kb.param(f"serum_mg.{key}"):
                grade = g
    elif high is not None and value > high:
        band = "above_lab_range"
        grade = 1
        for g, key in ((3, "ctcae_hyper_grade3_above"), (4, "ctcae_hyper_grade4_above")):
            if value > kb.param(f"serum_mg.{key}"):
                grade = g
    elif value < evidence_lower:
        band = "low_normal"
    else:
        band = "normal"
    interval = f"{_fmt(low or 0, 2)}–{_fmt(high or 0, 2)} mmol/L ({'reported by the lab' if interval_from == 'lab' else 'default interval: the lab reported none'})"
    mg_dl = calc.mg_mmol_to_mg_dl(kb, value)
    shown = f"{_fmt(value, 2)} mmol/L ({_fmt(mg_dl, 2)} mg/dL)"
    texts = {
        "below_lab_range": f"Serum magnesium {shown} is below the lab interval {interval}: hypomagnesaemia, CTCAE grade {grade}.",
        "low_normal": (
            f"Serum magnesium {shown} is within the lab interval {interval} but below the "
            f"evidence-based lower limit of {_fmt(evidence_lower)} mmol/L: the grey zone where a deficit "
            "is common when other markers are low."
        ),
        "normal": f"Serum magnesium {shown} is within the lab interval {interval} and at or above {_fmt(evidence_lower)} mmol/L.",
        "above_lab_range": f"Serum magnesium {shown} is above the lab interval {interval}: hypermagnesaemia, CTCAE grade {grade}.",
    }
    weights = {
        "below_lab_range": "deficit",
        "low_normal": "supportive",
        "normal": "reassuring",
        "above_lab_range": "excess",
    }
    sources = [*test.sources, *kb.parameters["serum_mg.evidence_lower"].sources]
    if grade is not None:
        sources.extend(kb.parameters["serum_mg.ctcae_hypo_grade2_below"].sources)
    if band == "low_normal":
        sources.extend(kb.statement("ex.grey_zone").sources)
    w.find(
        Finding(
            id=f"serum_mg.{band}",
            category="serum_magnesium",
            text=texts[band],
            weight=weights[band],
            rule=(
                f"below the lab's lower limit → below_lab_range; lower limit to < {_fmt(evidence_lower)} mmol/L → "
                "low_normal; above the lab's upper limit → above_lab_range; grade by CTCAE v5.0"
            ),
            inputs=(_lab_input("serum magnesium", lab),),
            sources=tuple(dict.fromkeys(sources)),
            strength="laboratory measurement; interval population-derived, 0.85 mmol/L an expert proposal",
        )
    )
    if interval_from == "default":
        w.limit("lim.default_interval", f"No reference range came with the result; {interval} was used.")
    return SerumMagnesium(
        mmol_l=value,
        band=band,
        mg_dl=mg_dl,
        meq_l=calc.mg_mmol_to_meq(kb, value),
        date=lab.when,
        current=True,
        lab_low=low,
        lab_high=high,
        interval_from=interval_from,
        evidence_lower=evidence_lower,
        ctcae_grade=grade,
        source=lab.origin.resource,
        history=history,
    )


def _egfr(w: _Work) -> EgfrResult:
    """Kidney function: a reported CKD-EPI 2021 (or unlabelled) eGFR, else computed, else other."""
    kb = w.kb
    facts = w.facts
    reported = w.latest.get("egfr")
    creatinine = w.latest.get("serum_creatinine")
    sources = kb.parameters["ckd_epi.constant"].sources
    method = (reported.method or "") if reported else ""
    computable = (
        creatinine is not None
        and w.age is not None
        and facts.sex is not None
        and w.age >= kb.param("ckd_epi.min_age")
    )
    # A reported eGFR is preferred when it is CKD-EPI 2021 or unlabelled, unless a creatinine
    # taken later gives a newer estimate: kidney function can fall within weeks.
    newer_creatinine = (
        computable
        and reported is not None
        and creatinine is not None
        and (creatinine.when or facts.as_of) > (reported.when or facts.as_of)
    )
    reported_preferred = (
        reported is not None
        and (not method or method.upper().startswith("CKD-EPI 2021"))
        and not newer_creatinine
    )
    if creatinine is not None and w.age is not None and w.age < kb.param("ckd_epi.min_age"):
        w.limit("lim.ckd_epi_adults", "The patient is younger than the age the equation is valid for.")
    if reported is not None and (reported_preferred or not computable):
        equation = method or "as reported (equation not stated)"
        result = EgfrResult(
            value=reported.value,
            equation=equation,
            origin="reported",
            date=reported.when,
            inputs=(_lab_input("eGFR", reported),),
            sources=kb.tests["egfr"].sources,
        )
        text = f"eGFR {_fmt(reported.value, 0)} mL/min/1.73 m² as reported ({equation})."
        rule = "a reported eGFR is used when it is CKD-EPI 2021 or unlabelled, or when none can be computed"
    elif computable:
        assert creatinine is not None and w.age is not None and facts.sex is not None
        value = calc.ckd_epi_2021(kb, creatinine.value, w.age, facts.sex)
        inputs = (
            _lab_input("serum creatinine", creatinine),
            InputUsed("age", round(w.age, 1), "years"),
            InputUsed("sex", facts.sex),
        )
        result = EgfrResult(value, "CKD-EPI 2021", "computed", creatinine.when, inputs, sources)
        text = (
            f"eGFR {_fmt(value, 0)} mL/min/1.73 m² computed by CKD-EPI 2021 from creatinine "
            f"{_fmt(creatinine.value, 2)} mg/dL, age {w.age:.0f}, {facts.sex}."
        )
        rule = "CKD-EPI 2021: 142 × min(Scr/κ,1)^α × max(Scr/κ,1)^−1.200 × 0.9938^age × 1.012 if female"
    else:
        w.missing.append("egfr_or_creatinine")
        return EgfrResult(None, None, None, None)
    chosen = _egfr_agreement(w, result, reported, creatinine)
    if chosen is not result:
        result = chosen
        text = (
            f"eGFR {_fmt(result.value or 0.0, 0)} mL/min/1.73 m² "
            + (
                f"as reported ({result.equation})"
                if result.origin == "reported"
                else "computed by CKD-EPI 2021 from creatinine"
            )
            + ": the lower of two conflicting estimates (see egfr.discrepancy)."
        )
        rule = "when a reported and a computed eGFR conflict, the lower is used for dosing advice"
    w.find(
        Finding(
            id="egfr",
            category="calculator",
            text=text,
            weight="info",
            rule=rule,
            inputs=result.inputs,
            sources=result.sources or sources,
        )
    )
    return result


def _egfr_agreement(w: _Work, result: EgfrResult, reported: Lab | None, creatinine: Lab | None) -> EgfrResult:
    """Compare a reported eGFR with the one computed from creatinine; flag a large gap.

    When both exist and differ by more than ``egfr.discrepancy_fraction`` of the higher value,
    a finding shows both and the lower (safer for dosing) value is used.
    """
    kb = w.kb
    facts = w.facts
    if reported is None or creatinine is None or w.age is None or facts.sex is None:
        return result
    if w.age < kb.param("ckd_epi.min_age") or result.value is None:
        return result
    computed = calc.ckd_epi_2021(kb, creatinine.value, w.age, facts.sex)
    high, low = max(computed, reported.value), min(computed, reported.value)
    if high <= 0 or (high - low) / high <= kb.param("egfr.discrepancy_fraction"):
        return result
    fraction = kb.param("egfr.discrepancy_fraction")
    when_r = reported.when.isoformat() if reported.when else "an unknown date"
    when_c = creatinine.when.isoformat() if creatinine.when else "an unknown date"
    w.find(
        Finding(
            id="egfr.discrepancy",
            category="calculator",
            text=(
                f"The reported eGFR {_fmt(reported.value, 0)} ({when_r}) and the eGFR {_fmt(computed, 0)} computed "
                f"by CKD-EPI 2021 from creatinine {_fmt(creatinine.value, 2)} mg/dL ({when_c}) differ by more than "
                f"{fraction * 100:.0f}%. The lower value, {_fmt(low, 0)} mL/min/1.73 m², is used for dosing advice as the "
                "safer reading; repeat creatinine to settle it."
            ),
            weight="info",
            rule=f"reported and computed eGFR more than {fraction * 100:.0f}% apart → flagged; the lower is used",
            inputs=(_lab_input("eGFR (reported)", reported), _lab_input("serum creatinine", creatinine)),
            sources=kb.parameters["egfr.discrepancy_fraction"].sources,
        )
    )
    w.limit("lim.conflicting_results", "A reported eGFR is far from the one computed from creatinine.")
    if low == result.value:
        return result
    if low == computed:
        inputs = (
            _lab_input("serum creatinine", creatinine),
            InputUsed("age", round(w.age, 1), "years"),
            InputUsed("sex", facts.sex),
        )
        return EgfrResult(
            computed,
            "CKD-EPI 2021",
            "computed",
            creatinine.when,
            inputs,
            kb.parameters["ckd_epi.constant"].sources,
        )
    return EgfrResult(
        reported.value,
        reported.method or "as reported (equation not stated)",
        "reported",
        reported.when,
        (_lab_input("eGFR", reported),),
        kb.tests["egfr"].sources,
    )


def _is_mg_therapy(w: _Work, med: Medication) -> bool:
    """Whether a current magnesium product is given as treatment (parenteral, or for a named indication)."""
    kb = w.kb
    is_product = any("magnesium_product" in kb.drugs[d].classes for d in med.drugs)
    if not is_product and "magnesium" not in med.text.lower():
        return False  # the common case, decided without a name lookup
    form = match_supplement(kb, med.text)
    parenteral_form = bool(form) and kb.supplements[form.ids[0]].route == "parenteral"
    if not (is_product or parenteral_form):
        return False
    if parenteral_form or (med.route or "").lower() in _PARENTERAL_ROUTES:
        return True
    reason = (med.reason or "").lower()
    return any(word in reason for word in _MG_THERAPY_INDICATIONS)


def _medications(w: _Work) -> None:
    kb = w.kb
    meds = w.facts.medications
    if meds is None:
        w.missing.append("medications")
        return
    for med in meds:
        if not med.current:
            continue
        for drug_id in med.drugs:
            for class_id in kb.drugs[drug_id].classes:
                w.current_classes.setdefault(class_id, []).append(med)
        if _is_mg_therapy(w, med):
            w.mg_therapy.append(med)
    if w.mg_therapy:
        w.find(
            Finding(
                id="drug.magnesium_therapy",
                category="treatment",
                text=(
                    "Magnesium is being given as treatment: "
                    + "; ".join(
                        m.text
                        + (f" ({m.route})" if m.route else "")
                        + (f", for {m.reason}" if m.reason else "")
                        for m in w.mg_therapy
                    )
                    + ". Serum magnesium is read against the therapeutic range of magnesium sulfate therapy."
                ),
                weight="info",
                rule="a current magnesium product given intravenously or intramuscularly, or recorded for eclampsia, "
                "tocolysis, torsades or asthma, is intended magnesium therapy",
                inputs=tuple(
                    InputUsed("medication", m.text, source=m.origin.resource, matched_by=m.origin.matched_by)
                    for m in w.mg_therapy
                ),
                sources=kb.statement("sf.mg_therapy").sources,
            )
        )
    for cls_id, taken in w.current_classes.items():
        klass = kb.drug_classes[cls_id]
        if klass.effect != "lowers" or klass.weight is None:
            continue
        names = ", ".join(
            dict.fromkeys(kb.drugs[d].name for m in taken for d in m.drugs if cls_id in kb.drugs[d].classes)
        )
        text = f"Current {klass.name.lower()} ({names}): {klass.mechanism}"
        rule = f"a current drug of a class that lowers magnesium counts as a {klass.weight} risk factor"
        sources = list(klass.sources)
        if cls_id == "ppi":
            long_term = kb.param("ppi.long_term_days")
            starts = [m.start for m in taken if m.start is not None]
            if starts:
                days = (w.facts.as_of - min(starts)).days
                if days >= long_term:
                    text += f" Taken for about {days // 30} months: the FDA saw most low-magnesium cases after more than a year of use."
                elif days < kb.param("ppi.min_days"):
                    text += (
                        f" Started {days} days ago: reported cases mostly follow at least 3 months of use."
                    )
                sources.extend(kb.parameters["ppi.long_term_days"].sources)
        (w.major if klass.weight == "major" else w.minor).append(f"drug.{cls_id}")
        w.find(
            Finding(
                id=f"drug.{cls_id}",
                category="risk_factor",
                text=text,
                weight=klass.weight,
                rule=rule,
                inputs=tuple(
                    InputUsed(
                        "medication",
                        m.text,
                        date=m.start,
                        source=m.origin.resource,
                        matched_by=m.origin.matched_by,
                    )
                    for m in taken
                ),
                sources=tuple(dict.fromkeys(sources)),
                strength=klass.evidence,
            )
        )
    if "qt_prolonging" in w.current_classes:
        klass = kb.drug_classes["qt_prolonging"]
        taken = w.current_classes["qt_prolonging"]
        names = ", ".join(
            dict.fromkeys(
                kb.drugs[d].name for m in taken for d in m.drugs if "qt_prolonging" in kb.drugs[d].classes
            )
        )
        w.find(
            Finding(
                id="drug.qt_prolonging",
                category="interaction",
                text=f"Current {klass.name.lower()} ({names}): {klass.mechanism}",
                weight="info",
                rule="a QT-prolonging drug does not lower magnesium; with a low or low-normal magnesium, low "
                "potassium or calcium it calls for an ECG and a safety note",
                inputs=tuple(
                    InputUsed("medication", m.text, source=m.origin.resource, matched_by=m.origin.matched_by)
                    for m in taken
                ),
                sources=klass.sources,
                strength=klass.evidence,
            )
        )
    for cls_id in sorted(w.current_classes):
        klass = kb.drug_classes[cls_id]
        if klass.effect == "raises":
            # Magnesium-containing products are a risk of excess; drugs that raise serum
            # magnesium as an effect (SGLT2 inhibitors) are shown for context.
            product = cls_id == "magnesium_product"
            w.find(
                Finding(
                    id=f"drug.{cls_id}",
                    category="risk_factor" if product else "protective",
                    text=f"Current {klass.name.lower()}: {klass.mechanism}",
                    weight="excess_risk" if product else "info",
                    rule="drugs that raise serum magnesium are shown; they never lower the deficit status",
                    inputs=tuple(
                        InputUsed("medication", m.text, source=m.origin.resource)
                        for m in w.current_classes[cls_id]
                    ),
                    sources=klass.sources,
                    strength=klass.evidence,
                )
            )


def _conditions(w: _Work) -> None:
    kb = w.kb
    conditions = w.facts.conditions
    if conditions is None:
        w.missing.append("conditions")
    recorded: dict[str, list[InputUsed]] = {}
    for c in conditions or ():
        if c.condition is not None and c.current:
            w.current_conditions.add(c.condition)
            recorded.setdefault(c.condition, []).append(
                InputUsed(
                    "condition",
                    c.text,
                    date=c.onset,
                    source=c.origin.resource,
                    matched_by=c.origin.matched_by,
                    # A provisional or differential diagnosis counts, and says so.
                    context=c.verification
                    if c.verification in ("provisional", "differential", "unconfirmed")
                    else None,
                )
            )
    # Patient-reported states count like the conditions they name.
    for flag, cond_id in (
        (w.facts.pregnant, "pregnancy"),
        (w.facts.lactating, "lactation"),
        (w.facts.chronic_stress, "chronic_stress"),
        (w.facts.high_metabolic_demand, "high_metabolic_demand"),
    ):
        if flag and cond_id in kb.conditions:
            w.current_conditions.add(cond_id)
    for cond_id in sorted(w.current_conditions):
        entry = kb.conditions[cond_id]
        used = tuple(recorded.get(cond_id, ())) or (InputUsed(cond_id, True),)
        if entry.effect == "lowers":
            (w.major if entry.weight == "major" else w.minor).append(f"condition.{cond_id}")
            w.find(
                Finding(
                    id=f"condition.{cond_id}",
                    category="risk_factor",
                    text=f"{entry.name}: {entry.what_is_known}",
                    weight=entry.weight,
                    rule=f"a current condition that lowers magnesium counts as a {entry.weight} risk factor",
                    inputs=used,
                    sources=entry.sources,
                    strength=entry.evidence,
                )
            )
        elif entry.effect == "raises":
            w.find(
                Finding(
                    id=f"condition.{cond_id}",
                    category="risk_factor",
                    text=f"{entry.name}: {entry.what_is_known}",
                    weight="excess_risk",
                    rule="a current condition that raises magnesium is a risk for hypermagnesaemia, not a deficit",
                    inputs=used,
                    sources=entry.sources,
                    strength=entry.evidence,
                )
            )


@per_kb
def _mds_components_by_drug(kb: KnowledgeBase) -> dict[str, frozenset[str]]:
    """Drug id -> the MDS components its classes count for (computed once per knowledge base)."""
    return {
        drug.id: frozenset(
            c for c in (kb.drug_classes[k].mds_component for k in drug.classes) if c is not None
        )
        for drug in kb.drugs.values()
    }


def _mds(w: _Work, egfr: EgfrResult) -> MdsResult:
    kb = w.kb
    facts = w.facts
    components: dict[str, int | None] = {}
    inputs: list[InputUsed] = []
    by_drug = _mds_components_by_drug(kb)
    for component in ("diuretic", "ppi"):
        if facts.medications is None:
            components[component] = None
            continue
        taking = [m for m in facts.medications if m.current and any(component in by_drug[d] for d in m.drugs)]
        unsure = [
            m
            for m in facts.medications
            if m.current is None and any(component in by_drug[d] for d in m.drugs)
        ]
        components[component] = 1 if taking else (None if unsure else 0)
        inputs.extend(
            InputUsed(component, m.text, source=m.origin.resource, matched_by=m.origin.matched_by)
            for m in taking
        )
    components["kidney"] = None if egfr.value is None else calc.mds_kidney_points(kb, egfr.value)
    if egfr.value is not None:
        inputs.append(InputUsed("eGFR", round(egfr.value, 1), "mL/min/1.73 m2", egfr.date))
    components["alcohol"] = _mds_alcohol(w, inputs)
    known = [v for v in components.values() if v is not None]
    score = sum(known) if known else None
    complete = len(known) == len(components)
    band: Literal["low", "middle", "high"] | None = None
    possible: tuple[int, int] | None = None
    if score is not None:
        upper = score + sum(_MDS_MAX[k] for k, v in components.items() if v is None)
        possible = (score, upper)
        low_band, high_band = calc.mds_band(kb, score), calc.mds_band(kb, upper)
        if low_band == high_band:
            band = low_band  # type: ignore[assignment]
    sources = tuple(
        dict.fromkeys(
            [*kb.parameters["mds.egfr_mild_below"].sources, *kb.parameters["mds.band_high"].sources]
        )
    )
    if score is not None:
        parts = ", ".join(f"{k} {'unknown' if v is None else v}" for k, v in components.items())
        text = f"Magnesium Depletion Score {score}" + (
            ""
            if complete
            else f" from the known components (could be {possible[0]}–{possible[1]})"
            if possible
            else ""
        )
        text += f": {parts}." + (
            f" Band: {band}." if band else " Band undecided until the unknown components are known."
        )
        if band in {"high", "middle"}:
            (w.major if band == "high" else w.minor).append("mds")
        w.find(
            Finding(
                id="mds",
                category="calculator",
                text=text,
                weight="major" if band == "high" else "minor" if band == "middle" else "info",
                rule="diuretic 1 + PPI 1 + kidney (eGFR 60–89: 1, < 60: 2) + heavy drinking 1; bands 0–1 low, 2 middle, 3–5 high",
                inputs=tuple(inputs),
                sources=tuple(dict.fromkeys([*sources, *kb.statement("ex.mds").sources])),
                strength="observational: predicts inflammation and mortality in NHANES; AUC 0.63 against the loading test",
            )
        )
    if not complete:
        unknown = ", ".join(k for k, v in components.items() if v is None)
        w.limit("lim.mds_incomplete", f"Unknown MDS components: {unknown}.")
    return MdsResult(score, complete, band, components, possible, sources)


def _mds_alcohol(w: _Work, inputs: list[InputUsed]) -> int | None:
    """Heavy drinking: from drinks/day; else a current alcohol use disorder; else AUDIT-C."""
    kb = w.kb
    sex = w.facts.sex
    drinks = w.latest.get("alcohol_drinks_per_day")
    if drinks is not None:
        heavy = calc.heavy_drinking(kb, drinks.value, sex)
        inputs.append(_lab_input("alcohol drinks/day", drinks))
        if heavy is not None:
            return int(heavy)
    if "alcohol_use_disorder" in w.current_conditions:
        w.alcohol_proxy = True
        inputs.append(InputUsed("alcohol use disorder (current diagnosis)", True))
        return 1
    audit = w.latest.get("audit_c")
    if audit is not None:
        inputs.append(_lab_input("AUDIT-C", audit))
        female_cut = kb.param("audit_c.positive_female_at_least")
        male_cut = kb.param("audit_c.positive_male_at_least")
        cut = female_cut if sex == "female" else male_cut if sex == "male" else min(female_cut, male_cut)
        if audit.value < cut:
            w.alcohol_proxy = True
            return 0
    return None


def _femg(w: _Work, serum: SerumMagnesium) -> FemgResult:
    kb = w.kb
    needed = ("urine_mg_spot", "urine_creatinine", "serum_mg", "serum_creatinine")
    labs = [w.latest.get(t) for t in needed]
    if any(lab is None for lab in labs):
        return FemgResult(None, None)
    u_mg, u_cr, s_mg, s_cr = labs
    assert u_mg is not None and u_cr is not None and s_mg is not None and s_cr is not None
    dates = [lab.when for lab in (u_mg, u_cr, s_mg, s_cr) if lab.when is not None]
    gap = kb.param("femg.max_gap_days")
    inputs = tuple(
        _lab_input(name, lab)
        for name, lab in zip(
            ("urine Mg", "urine creatinine", "serum Mg", "serum creatinine"), labs, strict=True
        )
        if lab
    )
    sources = tuple(
        dict.fromkeys(
            [
                *kb.parameters["femg.renal_above"].sources,
                *kb.parameters["femg.extrarenal_below"].sources,
                *kb.parameters["femg.ultrafilterable_fraction"].sources,
            ]
        )
    )
    if dates and (max(dates) - min(dates)).days > gap:
        w.limit(
            "lim.femg_conditions",
            f"FEMg not computed: the urine and serum samples are more than {gap:.0f} days apart.",
        )
        return FemgResult(None, None, inputs, "samples too far apart", sources)
    # Magnesium: urine spot in mmol/L, serum in mmol/L; creatinine both in mg/dL.
    percent = calc.femg_percent(kb, u_mg.value, s_mg.value, u_cr.value, s_cr.value)
    interpretation: Literal["renal", "extrarenal", "indeterminate"]
    if percent > kb.param("femg.renal_above"):
        interpretation = "renal"
        text = f"FEMg {_fmt(percent, 1)}% (> {_fmt(kb.param('femg.renal_above'))}%): the kidneys are losing magnesium (renal wasting)."
    elif percent < kb.param("femg.extrarenal_below"):
        interpretation = "extrarenal"
        text = f"FEMg {_fmt(percent, 1)}% (< {_fmt(kb.param('femg.extrarenal_below'))}%): the kidneys are conserving magnesium; loss or low intake is outside the kidney."
    else:
        interpretation = "indeterminate"
        text = f"FEMg {_fmt(percent, 1)}%: between the extrarenal (< 2%) and renal (> 4%) cut-offs; not decisive."
    note = None
    if serum.band not in ("below_lab_range", "low_normal"):
        note = "read as renal vs extrarenal loss mainly when serum magnesium is low"
    w.find(
        Finding(
            id=f"femg.{interpretation}",
            category="test",
            text=text,
            weight="info",
            rule="FEMg = (U_Mg × S_Cr) / (0.7 × S_Mg × U_Cr) × 100; > 4% renal, < 2% extrarenal",
            inputs=inputs,
            sources=sources,
            strength="cut-offs from a JAMA review (via secondary) and Elisaf's distributions",
        )
    )
    w.limit(
        "lim.femg_conditions", "FEMg is valid mainly with near-normal kidney function and in hypomagnesaemia."
    )
    return FemgResult(percent, interpretation, inputs, note, sources)


def _urine_24h(w: _Work, serum: SerumMagnesium) -> None:
    lab = w.latest.get("urine_mg_24h")
    if lab is None:
        return
    kb = w.kb
    cut = kb.param("urine_mg_24h.renal_wasting_above")
    param_sources = kb.parameters["urine_mg_24h.renal_wasting_above"].sources
    if serum.band == "below_lab_range":
        renal = lab.value > cut
        text = f"24-hour urine magnesium {_fmt(lab.value, 2)} mmol/day while serum is low: " + (
            "above 1 mmol/day, which points to renal wasting."
            if renal
            else "at or below 1 mmol/day, which points to loss outside the kidney or low intake."
        )
        finding_id = "urine_24h.renal_wasting" if renal else "urine_24h.extrarenal"
    else:
        text = f"24-hour urine magnesium {_fmt(lab.value, 2)} mmol/day: without hypomagnesaemia it mainly reflects recent intake."
        finding_id = "urine_24h.intake_marker"
        w.limit("lim.urine_reflects_intake", "Urine magnesium was measured without hypomagnesaemia.")
    w.find(
        Finding(
            id=finding_id,
            category="test",
            text=text,
            weight="info",
            rule="in hypomagnesaemia, > 1 mmol/day in 24-h urine indicates renal wasting",
            inputs=(_lab_input("24-h urine magnesium", lab),),
            sources=param_sources,
        )
    )


def _loading(w: _Work, egfr: EgfrResult, femg: FemgResult) -> LoadingResult:
    kb = w.kb
    facts = w.facts
    lab = w.latest.get("loading_retention")
    inputs: tuple[InputUsed, ...]
    if lab is not None:
        retention = lab.value
        inputs = (_lab_input("loading-test retention", lab),)
    elif facts.loading_dose_mmol is not None and facts.loading_urine_mmol is not None:
        baseline = facts.loading_baseline_urine_mmol or 0.0
        retention = calc.loading_retention_percent(
            facts.loading_dose_mmol, facts.loading_urine_mmol, baseline
        )
        inputs = (
            InputUsed("loading dose", facts.loading_dose_mmol, "mmol"),
            InputUsed("urine magnesium after load", facts.loading_urine_mmol, "mmol"),
            InputUsed("baseline urine magnesium", facts.loading_baseline_urine_mmol, "mmol"),
        )
    else:
        return LoadingResult(None, None, None)
    deficient_cut = kb.param("loading.retention_deficient_above")
    borderline_cut = kb.param("loading.retention_borderline_above")
    interpretation: Literal["deficient", "borderline", "normal"] = (
        "deficient" if retention > deficient_cut else "borderline" if retention > borderline_cut else "normal"
    )
    reasons = []
    diuretic_classes = {c.id for c in kb.drug_classes.values() if c.mds_component == "diuretic"}
    if diuretic_classes & set(w.current_classes):
        reasons.append("a current diuretic")
    if egfr.value is not None and egfr.value < kb.param("mds.egfr_reduced_below"):
        reasons.append("reduced kidney function")
    if femg.interpretation == "renal":
        reasons.append("renal magnesium wasting")
    valid: bool | None = not reasons
    if not reasons and facts.medications is None:
        valid = None
    sources = tuple(
        dict.fromkeys(
            [
                *kb.parameters["loading.retention_deficient_above"].sources,
                *kb.parameters["loading.retention_borderline_above"].sources,
            ]
        )
    )
    note = None
    if reasons:
        note = "outside the conditions the test was validated for: " + ", ".join(reasons)
        w.limit("lim.loading_invalid", f"The loading test was done with {', '.join(reasons)}.")
    # A high retention still counts when the conditions are not met: dropping it would let a
    # worse input (a new diuretic, a lower eGFR) give a more reassuring status. The finding and
    # the limitation say that the test was not done under its validated conditions.
    if interpretation == "deficient":
        w.low_markers.append("loading_test")
    w.find(
        Finding(
            id=f"loading_test.{interpretation}",
            category="test",
            text=(
                f"Magnesium loading test: {_fmt(retention, 1)}% of the load retained ("
                + {
                    "deficient": f"> {_fmt(deficient_cut)}%, suggests deficiency",
                    "borderline": f"{_fmt(borderline_cut)}–{_fmt(deficient_cut)}%, borderline",
                    "normal": f"≤ {_fmt(borderline_cut)}%, normal retention",
                }[interpretation]
                + ")"
                + (f"; {note}." if note else ".")
            ),
            weight="supportive" if interpretation == "deficient" else "info",
            rule=(
                "retention > 25% suggests deficiency (> 20% borderline); the test is validated only without "
                "renal wasting, diuretics or reduced kidney function"
            ),
            inputs=inputs,
            sources=sources,
            strength="no single standard protocol; healthy 97.5th percentile 27.5%",
        )
    )
    return LoadingResult(retention, interpretation, valid, note, sources)


def _other_markers(w: _Work) -> None:
    """RBC and ionised magnesium below their interval; low potassium and calcium."""
    kb = w.kb
    for test_id, limitation in (("rbc_mg", "lim.rbc_no_standard"), ("ionised_mg", "lim.ionised_method")):
        lab = w.latest.get(test_id)
        if lab is None:
            continue
        test = kb.tests[test_id]
        low = lab.ref_low if lab.ref_low is not None else test.default_low
        w.limit(limitation, f"{test.name} was used.")
        if low is not None and lab.value < low:
            w.low_markers.append(test_id)
            w.find(
                Finding(
                    id=f"{test_id}.low",
                    category="test",
                    text=f"{test.name} {_fmt(lab.value, 2)} mmol/L is below its interval (lower limit {_fmt(low, 2)} mmol/L, {'lab' if lab.ref_low is not None else 'default'}).",
                    weight="supportive",
                    rule="a body-store marker below its interval supports a deficit",
                    inputs=(_lab_input(test.name, lab),),
                    sources=test.sources,
                )
            )
    for test_id, sign_id, param in (
        ("potassium", "hypokalaemia", "potassium.low_below"),
        ("calcium_ionised", "hypocalcaemia", "calcium_ionised.low_below"),
        ("calcium_total", "hypocalcaemia", "calcium.low_below"),
    ):
        lab = w.latest.get(test_id)
        if lab is None or sign_id not in kb.signs or sign_id in w.present_signs:
            continue
        low = lab.ref_low
        sources = list(kb.tests[test_id].sources)
        if low is None and param in kb.parameters:
            low = kb.param(param)
            sources.extend(kb.parameters[param].sources)
        if low is None or lab.value >= low:
            continue
        sign = kb.signs[sign_id]
        w.present_signs.add(sign_id)
        w.find(
            Finding(
                id=f"sign.{sign_id}",
                category="sign",
                text=f"{sign.name}: {kb.tests[test_id].name} {_fmt(lab.value, 2)} {lab.unit} is below {_fmt(low, 2)}. {sign.text}",
                weight=sign.specificity,
                rule=f"{kb.tests[test_id].name} below the lab's lower limit (or the knowledge base's) counts as {sign.name.lower()}",
                inputs=(_lab_input(kb.tests[test_id].name, lab),),
                sources=tuple(dict.fromkeys([*sources, *sign.sources])),
            )
        )
        (
            w.specific_signs
            if sign.specificity == "specific"
            else w.supportive_signs
            if sign.specificity == "supportive"
            else []
        ).append(sign_id)
    _glycaemia(w)


def _glycaemia(w: _Work) -> None:
    """Poor glycaemic control from a recent HbA1c against the ADA goal, never from diabetes alone.

    HbA1c at or above ``hba1c.goal_below`` (taken within ``hba1c.recent_days``) is the sign
    "poor glycaemic control"; a recent result below it sets aside any record of poor control
    or hyperglycaemia. Without a recent result, only a current, recent record of the sign counts.
    """
    kb = w.kb
    sign_id = "poor_glycaemic_control"
    lab = w.latest.get("hba1c")
    if sign_id not in kb.signs or "hba1c.goal_below" not in kb.parameters:
        return
    if lab is None or (w.facts.as_of - (lab.when or w.facts.as_of)).days > kb.param("hba1c.recent_days"):
        _glucose(w)
        return
    goal = kb.param("hba1c.goal_below")
    test = kb.tests["hba1c"]
    if lab.value < goal:
        w.refuted_signs[sign_id] = (
            f"contradicted by a recent HbA1c of {_fmt(lab.value, 1)}% (below the goal of {_fmt(goal, 1)}%)"
        )
        return
    if sign_id in w.present_signs:
        return
    sign = kb.signs[sign_id]
    w.present_signs.add(sign_id)
    w.find(
        Finding(
            id=f"sign.{sign_id}",
            category="sign",
            text=f"{sign.name}: {test.name} {_fmt(lab.value, 1)}% is at or above the goal of below {_fmt(goal, 1)}%. {sign.text}",
            weight=sign.specificity,
            rule=f"{test.name} at or above {_fmt(goal, 1)}% within {_fmt(kb.param('hba1c.recent_days'), 0)} days counts as poor glycaemic control",
            inputs=(_lab_input(test.name, lab),),
            sources=tuple(
                dict.fromkeys([*kb.parameters["hba1c.goal_below"].sources, *test.sources, *sign.sources])
            ),
        )
    )
    if sign.specificity == "supportive":
        w.supportive_signs.append(sign_id)
    elif sign.specificity == "specific":
        w.specific_signs.append(sign_id)


def _glucose(w: _Work) -> None:
    """Without a recent HbA1c: a recent glucose at or above the ADA hyperglycaemia threshold."""
    kb = w.kb
    sign_id = "poor_glycaemic_control"
    lab = w.latest.get("glucose")
    param = "glucose.hyperglycaemia_at_least"
    if lab is None or param not in kb.parameters or sign_id in w.present_signs:
        return
    if (w.facts.as_of - (lab.when or w.facts.as_of)).days > kb.param("signs.recent_days"):
        return
    threshold = kb.param(param)
    if lab.value < threshold:
        return
    sign = kb.signs[sign_id]
    test = kb.tests["glucose"]
    w.present_signs.add(sign_id)
    w.find(
        Finding(
            id=f"sign.{sign_id}",
            category="sign",
            text=f"{sign.name}: glucose {_fmt(lab.value, 1)} mmol/L is at or above {_fmt(threshold, 1)} mmol/L (marked hyperglycaemia); no recent HbA1c. {sign.text}",
            weight=sign.specificity,
            rule=f"without an HbA1c within {_fmt(kb.param('hba1c.recent_days'), 0)} days, a glucose of {_fmt(threshold, 1)} mmol/L or more within {_fmt(kb.param('signs.recent_days'), 0)} days counts as poor glycaemic control",
            inputs=(_lab_input(test.name, lab),),
            sources=tuple(dict.fromkeys([*kb.parameters[param].sources, *test.sources, *sign.sources])),
        )
    )
    {"specific": w.specific_signs, "supportive": w.supportive_signs}.get(sign.specificity, []).append(sign_id)


def _sign_input(w: _Work, fact: SignFact, context: str | None) -> InputUsed:
    return InputUsed(
        w.kb.signs[fact.sign].name,
        fact.present,
        date=fact.when,
        source=fact.origin.resource,
        matched_by=fact.origin.matched_by,
        context=context,
    )


def _set_aside(w: _Work, fact: SignFact) -> str | None:
    """Why a sign reported present does not count as current now (``None`` when it does).

    Context from the record (ConText or FHIR status), a lifelong diagnosis, an old record
    (``signs.recent_days``), or a recent result that contradicts it (HbA1c at goal).
    """
    trigger = f' by "{fact.trigger}"' if fact.trigger else ""
    if fact.context != "current":
        return f"{fact.context}{trigger}"
    window = w.kb.param("signs.recent_days")
    if fact.when is not None and (w.facts.as_of - fact.when).days > window:
        return f"not_recent (recorded {fact.when.isoformat()}, more than {_fmt(window, 0)} days before)"
    return w.refuted_signs.get(fact.sign)


def _signs(w: _Work) -> None:
    """Signs reported present and current count; the others are shown with their context."""
    kb = w.kb
    reported: dict[str, list[InputUsed]] = {}
    aside: dict[str, list[InputUsed]] = {}
    for fact in w.facts.signs:
        if not fact.present:
            if fact.context != "current":
                aside.setdefault(fact.sign, []).append(_sign_input(w, fact, _set_aside(w, fact)))
            continue
        reason = _set_aside(w, fact)
        if reason is not None:
            aside.setdefault(fact.sign, []).append(_sign_input(w, fact, reason))
        else:
            reported.setdefault(fact.sign, []).append(
                _sign_input(w, fact, "current" if fact.when or fact.trigger else None)
            )
    for sign_id in sorted(reported):
        if sign_id in w.present_signs:
            continue
        sign = kb.signs[sign_id]
        w.present_signs.add(sign_id)
        {"specific": w.specific_signs, "supportive": w.supportive_signs}.get(sign.specificity, []).append(
            sign_id
        )
        w.find(
            Finding(
                id=f"sign.{sign_id}",
                category="sign",
                text=f"{sign.name}: {sign.text}",
                weight=sign.specificity,
                rule={
                    "specific": "a specific sign raises the likelihood of a deficit, most with a risk factor or a low-normal serum value",
                    "supportive": "a supportive sign raises the likelihood of a deficit together with a major risk factor or a low-normal serum value",
                    "nonspecific": "a nonspecific sign is listed but does not change the status on its own",
                }[sign.specificity],
                inputs=tuple(reported[sign_id]),
                sources=sign.sources,
            )
        )
    for sign_id in sorted(aside):
        if sign_id in w.present_signs:
            continue
        sign = kb.signs[sign_id]
        reasons = "; ".join(dict.fromkeys((i.context or "").replace("_", " ", 1) for i in aside[sign_id]))
        w.find(
            Finding(
                id=f"context.sign.{sign_id}",
                category="context",
                text=f"{sign.name}: named in the record, but not a current sign ({reasons}); not counted.",
                weight="info",
                rule=(
                    "a sign counts only when reported present now: ConText triggers mark it negated, "
                    "historical, hypothetical or about a relative; a lifelong diagnosis named after it "
                    f"(epilepsy for seizure) is not the acute sign; a record older than {_fmt(kb.param('signs.recent_days'), 0)} "
                    "days is history; a recent HbA1c below goal outweighs a record of poor control"
                ),
                inputs=tuple(aside[sign_id]),
                sources=tuple(
                    dict.fromkeys(["S300", "S301", *kb.parameters["signs.recent_days"].sources, "S303"])
                ),
            )
        )
    if "muscle_cramps" in w.present_signs and "lim.cramps" in kb.statements:
        w.limit("lim.cramps", "Muscle cramps were reported.")


def _alcohol_and_lifestyle(w: _Work) -> None:
    kb = w.kb
    facts = w.facts
    drinks = w.latest.get("alcohol_drinks_per_day")
    audit = w.latest.get("audit_c")
    if drinks is not None:
        if calc.heavy_drinking(kb, drinks.value, facts.sex):
            _alcohol_finding(
                w,
                "alcohol.heavy",
                text=f"{_fmt(drinks.value, 1)} drinks a day is heavy drinking (more than 1 a day for women, 2 for men): "
                "alcohol increases renal and gut magnesium loss.",
                rule="> 1 drink/day (women) or > 2 (men), as the MDS defines heavy drinking",
                used=_lab_input("alcohol drinks/day", drinks),
                param="alcohol.heavy_female_above",
                strength="strong",
            )
    elif audit is not None and "alcohol_use_disorder" not in w.current_conditions:
        cut = kb.param(
            "audit_c.positive_female_at_least" if facts.sex == "female" else "audit_c.positive_male_at_least"
        )
        if facts.sex is not None and audit.value >= cut:
            _alcohol_finding(
                w,
                "alcohol.audit_c_positive",
                text=f"AUDIT-C {audit.value:.0f} is a positive screen for unhealthy drinking (≥ {cut:.0f} for "
                f"{facts.sex}s); alcohol misuse is a common cause of magnesium loss. The drinks per day are not "
                "known, so the MDS alcohol item stays unknown.",
                rule="AUDIT-C at or above the sex-specific cut-off is a positive screen",
                used=_lab_input("AUDIT-C", audit),
                param="audit_c.positive_male_at_least",
                strength="screening instrument",
            )
    if drinks is None and audit is None and "alcohol_use_disorder" not in w.current_conditions:
        w.missing.append("alcohol")
    if w.age is None:
        w.missing.append("age")
    elif w.age >= kb.param("age.older_adult_at_least"):
        w.minor.append("age")
        w.find(
            Finding(
                id="age.older",
                category="risk_factor",
                text=f"Age {w.age:.0f}: older adults more often have low intake and lower absorption, though serum magnesium changes little with age.",
                weight="minor",
                rule=f"age ≥ {kb.param('age.older_adult_at_least'):.0f} years counts as a minor risk factor",
                inputs=(InputUsed("age", round(w.age, 1), "years"),),
                sources=kb.parameters["age.older_adult_at_least"].sources,
                strength="moderate",
            )
        )
    if facts.sex is None:
        w.missing.append("sex")


def _alcohol_finding(
    w: _Work, finding_id: str, *, text: str, rule: str, used: InputUsed, param: str, strength: str
) -> None:
    """Record heavy or unhealthy drinking as a major risk factor, citing the cut-off and AUD."""
    kb = w.kb
    aud = kb.conditions.get("alcohol_use_disorder")
    sources = tuple(dict.fromkeys([*kb.parameters[param].sources, *(aud.sources if aud else ())]))
    w.major.append(finding_id)
    w.find(
        Finding(
            id=finding_id,
            category="risk_factor",
            text=text,
            weight="major",
            rule=rule,
            inputs=(used,),
            sources=sources,
            strength=strength,
        )
    )


def _intake(w: _Work) -> IntakeResult:
    kb = w.kb
    facts = w.facts
    amount: float | None = facts.diet_mg_per_day
    estimated_from: Literal["reported", "food_frequency"] | None = "reported" if amount is not None else None
    ffq_sources: list[str] = []
    if amount is None and facts.food_frequency:
        amount = calc.food_frequency_mg(kb, facts.food_frequency)
        estimated_from = "food_frequency"
        for item in facts.food_frequency:
            ffq_sources.extend(kb.foods[item.food].sources)
        w.limit("lim.intake_estimate", "Intake was estimated from a short food-frequency answer set.")
    row = None
    if w.age is not None:
        row = calc.dri_for(kb, w.age, facts.sex, facts.pregnant, facts.lactating)
    if amount is None:
        w.missing.append("diet")
        return IntakeResult(
            None,
            None,
            row.id if row else None,
            row.ear_mg if row else None,
            row.rda_mg if row else None,
            bool(row and row.is_ai),
            None,
            None,
            row.sources if row else (),
        )
    if row is None:
        return IntakeResult(amount, estimated_from, None, None, None, False, None, None, tuple(ffq_sources))
    below = None if row.ear_mg is None else amount < row.ear_mg
    percent = amount / row.rda_mg * 100.0
    sources = tuple(dict.fromkeys([*row.sources, *ffq_sources]))
    reference = f"EAR {row.ear_mg:.0f} mg" if row.ear_mg is not None else "no EAR for this life stage"
    text = f"Dietary magnesium about {amount:.0f} mg/day: {percent:.0f}% of the {'AI' if row.is_ai else 'RDA'} of {row.rda_mg:.0f} mg/day ({reference})."
    if below:
        w.minor.append("diet.below_ear")
        text += " Below the EAR: inadequate for most people of this life stage."
    w.find(
        Finding(
            id="diet.below_ear" if below else "diet.intake",
            category="diet",
            text=text,
            weight="minor" if below else "info",
            rule="intake below the life stage's EAR counts as a minor risk factor",
            inputs=(InputUsed("dietary magnesium", round(amount), "mg/day"), InputUsed("life stage", row.id)),
            sources=sources,
            strength="IOM 1997 DRIs",
        )
    )
    return IntakeResult(
        amount, estimated_from, row.id, row.ear_mg, row.rda_mg, row.is_ai, percent, below, sources
    )


def _supplements(w: _Work) -> SupplementResult:
    kb = w.kb
    facts = w.facts
    if facts.supplements is None:
        w.missing.append("supplements")
        return SupplementResult(None, None, None)
    total = 0.0
    unknown_content: list[str] = []
    not_counted: list[str] = []
    sources: list[str] = []
    therapy_sources = {m.origin.resource for m in w.mg_therapy if m.origin.resource}
    for item in facts.supplements:
        if item.origin.resource is not None and item.origin.resource in therapy_sources:
            continue  # magnesium given as treatment is not a supplement (see _safety)
        entry = kb.supplements.get(item.form) if item.form else None
        if entry is not None:
            sources.extend(entry.sources)
        if entry is not None and not entry.counts_toward_intake:
            not_counted.append(item.text)
            continue
        if item.elemental_mg_per_day is not None:
            total += item.elemental_mg_per_day
        elif item.product_mg_per_day is not None:
            elemental = calc.elemental_mg(kb, item.form, item.product_mg_per_day)
            if elemental is None:
                unknown_content.append(item.text)
            else:
                total += elemental
        else:
            unknown_content.append(item.text)
    row = calc.dri_for(kb, w.age, facts.sex, facts.pregnant, facts.lactating) if w.age is not None else None
    if row is None and w.age is not None:
        # The UL does not depend on sex: any row of the age band will do.
        row = next((r for r in kb.dri if r.age_min <= w.age < r.age_max), None)
    ul = row.ul_supplemental_mg if row else None
    above = None if ul is None else total > ul
    if row is not None:
        sources.extend(row.sources)
    if not_counted:
        w.safe("sf.transdermal", f"Not counted: {', '.join(not_counted)}.")
    if facts.supplements:
        text = (
            f"Supplemental elemental magnesium about {total:.0f} mg/day"
            + (f" (UL {ul:.0f} mg/day for supplements)" if ul else "")
            + "."
        )
        if unknown_content:
            text += f" Content unknown for: {', '.join(unknown_content)}."
        w.find(
            Finding(
                id="supplements.above_ul" if above else "supplements.total",
                category="supplement",
                text=text,
                weight="info",
                rule="elemental Mg = product amount × elemental percentage of the salt; compared with the UL for supplements",
                inputs=tuple(
                    InputUsed("supplement", s.text, "mg/day", source=s.origin.resource)
                    for s in facts.supplements
                ),
                sources=tuple(dict.fromkeys(sources)),
            )
        )
    return SupplementResult(
        total if facts.supplements else 0.0, ul, above, tuple(not_counted), tuple(dict.fromkeys(sources))
    )


# --------------------------------------------------------------------------------------------
# Step 5: the status


def _decide(w: _Work, serum: SerumMagnesium, mds: MdsResult) -> tuple[Status, str | None, Finding]:
    """Combine the evidence into a status, by precedence (first rule that holds wins).

    1. excess: current serum Mg above the lab's upper limit, unless magnesium is being given as
       treatment and the value is within the labelled therapeutic range (up to 2.5 mmol/L):
       that is a therapeutic finding and the status is indeterminate (a value raised by an
       infusion says nothing about body stores). Above the therapeutic range it is excess.
    2. deficient: current serum Mg below the lab's lower limit. Severity from the value
       (< 0.4 severe, < 0.5 moderate, else mild) and from what makes it dangerous: tetany,
       seizures or arrhythmia make it severe; refractory hypokalaemia or hypocalcaemia at
       least moderate. The reason is given with the grade.
    3. likely_deficient: a body-store marker is low (RBC or ionised Mg below interval, loading
       test retention > 25%); or serum is low-normal with a strong risk (a major risk factor,
       MDS high), a specific or supportive sign, or intake below the EAR; or, with no current
       serum value, a specific sign together with a strong risk.
    4. at_risk: any risk: a major risk factor, two minor ones, MDS middle or high, a specific
       or supportive sign, or a low-normal serum value.
    5. unlikely: serum at or above 0.85 mmol/L and no risk; or, with no serum value, a
       complete MDS of 0–1 with medications and conditions known and no other risk.
    6. indeterminate: otherwise (too little is known).
    """
    kb = w.kb
    band = serum.band if serum.current else None
    strong = bool(w.major) or mds.band == "high" or bool(w.specific_signs)
    risk = strong or len(w.minor) >= 2 or bool(w.supportive_signs) or "mds" in w.minor
    evidence = [
        f.id
        for f in w.findings
        if f.weight in ("deficit", "excess", "major", "minor", "specific", "supportive")
    ]
    severity: str | None = None
    therapeutic_high = kb.param("mg_therapy.therapeutic_high")
    if band == "above_lab_range" and w.mg_therapy and (serum.mmol_l or 0.0) <= therapeutic_high:
        status: Status = "indeterminate"
        rule = (
            f"serum magnesium above the lab's upper limit but at or below {_fmt(therapeutic_high)} mmol/L during "
            "intended magnesium therapy → within the therapeutic range, not excess; deficit status cannot be judged"
        )
        w.find(
            Finding(
                id="serum_mg.therapeutic",
                category="serum_magnesium",
                text=(
                    f"Serum magnesium {_fmt(serum.mmol_l or 0.0, 2)} mmol/L is raised as expected during magnesium "
                    f"therapy and is within the labelled therapeutic range "
                    f"({_fmt(kb.param('mg_therapy.therapeutic_low'))}–{_fmt(therapeutic_high)} mmol/L, 2.5–5 mEq/L): "
                    "a therapeutic level, not magnesium excess."
                ),
                weight="info",
                rule=f"intended magnesium therapy and serum ≤ {_fmt(therapeutic_high)} mmol/L → therapeutic",
                inputs=(InputUsed("serum magnesium", serum.mmol_l, "mmol/L", serum.date, serum.source),),
                sources=kb.parameters["mg_therapy.therapeutic_high"].sources,
            )
        )
    elif band == "above_lab_range":
        status = "excess"
        grade = serum.ctcae_grade or 1
        severity = {1: "mild", 3: "severe", 4: "life-threatening"}.get(grade, "mild")
        rule = "serum magnesium above the lab's upper limit → excess (severity by CTCAE grade)"
        w.severity_reason = f"serum magnesium {_fmt(serum.mmol_l or 0.0, 2)} mmol/L, CTCAE grade {grade}"
        if w.mg_therapy:
            rule = (
                f"serum magnesium above the therapeutic range of magnesium therapy ({_fmt(therapeutic_high)} mmol/L) "
                "→ excess (toxicity; severity by CTCAE grade)"
            )
            w.severity_reason += (
                f", above the therapeutic range of {_fmt(therapeutic_high)} mmol/L during magnesium therapy"
            )
    elif band == "below_lab_range":
        status = "deficient"
        assert serum.mmol_l is not None
        order = {"mild": 0, "moderate": 1, "severe": 2}
        if serum.mmol_l < kb.param("serum_mg.ctcae_hypo_grade3_below"):
            severity = "severe"
        elif serum.mmol_l < kb.param("serum_mg.symptomatic_below"):
            severity = "moderate"
        else:
            severity = "mild"
        reasons = [f"serum magnesium {_fmt(serum.mmol_l, 2)} mmol/L"]
        symptomatic = [s for s in _SYMPTOMATIC_SIGNS if s in w.present_signs]
        refractory = [s for s in _REFRACTORY_SIGNS if s in w.present_signs]
        if symptomatic:
            severity = "severe"
            reasons.append("with " + ", ".join(kb.signs[s].name.lower() for s in symptomatic))
        if refractory:
            if order[severity] < order["moderate"]:
                severity = "moderate"
            reasons.append("with " + ", ".join(kb.signs[s].name.lower() for s in refractory))
        if not symptomatic and not refractory:
            reasons.append("no symptoms or refractory hypokalaemia/hypocalcaemia recorded")
        w.severity_reason = "; ".join(reasons)
        rule = (
            "serum magnesium below the lab's lower limit → deficient (≥ 0.5 mild, 0.4–0.5 moderate, < 0.4 mmol/L "
            "severe; tetany, seizures or arrhythmia → severe; refractory hypokalaemia or hypocalcaemia → at least "
            f"moderate): {w.severity_reason}"
        )
    elif w.low_markers:
        status = "likely_deficient"
        rule = "a body-store marker is low (RBC or ionised magnesium below interval, or loading-test retention above 25%) → likely deficient"
    elif band == "low_normal" and (strong or w.supportive_signs or "diet.below_ear" in w.minor):
        status = "likely_deficient"
        rule = "serum in the grey zone (lab lower limit to 0.85 mmol/L) with a strong risk, a sign or low intake → likely deficient"
    elif band is None and w.specific_signs and (w.major or mds.band == "high"):
        status = "likely_deficient"
        rule = "no current serum value, a specific sign and a strong risk factor → likely deficient"
    elif risk or band == "low_normal":
        status = "at_risk"
        rule = (
            "a major risk factor, two minor ones, MDS 2 or more, a sign, or a grey-zone serum value → at risk"
        )
    elif band == "normal":
        status = "unlikely"
        rule = "serum magnesium at or above 0.85 mmol/L and no risk factor → deficiency unlikely"
    elif (
        band is None
        and mds.complete
        and mds.score is not None
        and mds.score < kb.param("mds.band_middle")
        and w.facts.medications is not None
        and w.facts.conditions is not None
        and not w.major
        and not w.minor
    ):
        status = "unlikely"
        rule = "no serum value, but a complete MDS of 0–1 with medications and conditions known and no risk factor → deficiency unlikely"
    else:
        status = "indeterminate"
        rule = "too little is known to judge: no current serum magnesium and no risk factor or complete MDS"
    basis = Finding(
        id="status",
        category="status",
        text=f"Status {status.replace('_', ' ')}" + (f" ({severity})" if severity else "") + f": {rule}.",
        weight="info",
        rule=_decide.__doc__.split("\n\n", 1)[1].strip() if _decide.__doc__ else rule,
        inputs=tuple(InputUsed("finding", e) for e in evidence),
        sources=kb.statement("lim.decision_support").sources,
    )
    return status, severity, basis


# --------------------------------------------------------------------------------------------
# Step 6: what to do next, what is safe, why it matters, what it cannot show


def _has_recent(w: _Work, *tests: str) -> bool:
    return any(t in w.latest for t in tests)


def _next_steps(w: _Work, status: Status, serum: SerumMagnesium, egfr: EgfrResult, femg: FemgResult) -> None:
    kb = w.kb
    band = serum.band if serum.current else None
    if band is None:
        priority: Literal["urgent", "high", "routine"] = (
            "high" if status in ("likely_deficient", "at_risk") else "routine"
        )
        if w.specific_signs:
            priority = "urgent"
        reason = (
            "No current serum magnesium result."
            if serum.mmol_l is None
            else "The last serum magnesium is not recent."
        )
        watched = [
            kb.drug_classes[c].name.lower()
            for c in ("cardiac_glycoside", "qt_prolonging")
            if c in w.current_classes
        ]
        if watched:
            # Digoxin and QT-prolonging drugs call for a magnesium check whatever the status.
            reason += f" Current {' and '.join(watched)}: low magnesium adds to their risk."
            if priority == "routine":
                priority = "high"
        w.step("ns.measure_serum_mg", reason, priority)
    if band == "below_lab_range" and femg.percent is None and not _has_recent(w, "urine_mg_24h"):
        w.step(
            "ns.femg_or_24h_urine",
            "Serum magnesium is low; the cause (renal or extrarenal) is not yet known.",
            "high",
        )
    if band == "low_normal":
        w.step("ns.loading_test_grey_zone", "Serum magnesium is in the grey zone.", "routine")
        w.step(
            "ns.body_stores", "Serum magnesium is in the grey zone, where serum alone cannot tell.", "routine"
        )
    if band == "normal" and status == "at_risk" and (w.major or mds_high(w)):
        w.step(
            "ns.body_stores",
            "Strong risk factors with a normal serum value: serum can stay normal despite depletion.",
        )
    if status in ("deficient", "likely_deficient") or w.supportive_signs or w.specific_signs:
        missing = [
            name
            for name, tests in (
                ("potassium", ("potassium",)),
                ("calcium", ("calcium_total", "calcium_ionised", "calcium_corrected")),
            )
            if not _has_recent(w, *tests)
        ]
        reason = "Magnesium deficiency causes hypokalaemia and hypocalcaemia."
        if missing:
            reason += f" No current {' or '.join(missing)} result."
        w.step("ns.check_k_ca", reason, "high" if status == "deficient" else "routine")
    ecg_reasons = [kb.signs[s].name for s in _ECG_SIGNS if s in w.present_signs]
    if serum.current and serum.mmol_l is not None and serum.mmol_l < kb.param("serum_mg.symptomatic_below"):
        ecg_reasons.append("serum magnesium below 0.5 mmol/L")
    arrhythmia_risk = _arrhythmia_risk(w, serum)
    if arrhythmia_risk:
        ecg_reasons.append(arrhythmia_risk)
    if status == "excess" and (serum.ctcae_grade or 0) >= 3:
        ecg_reasons.append("hypermagnesaemia above 1.23 mmol/L")
    if "cardiac_glycoside" in w.current_classes and status in (
        "deficient",
        "likely_deficient",
        "at_risk",
        "excess",
    ):
        ecg_reasons.append("digoxin with a magnesium disturbance or risk")
    if ecg_reasons:
        w.step(
            "ns.ecg",
            _sentence("; ".join(dict.fromkeys(ecg_reasons))),
            "urgent" if band == "below_lab_range" or status == "excess" else "high",
        )
    if egfr.value is None and (status in ("deficient", "likely_deficient", "excess") or w.facts.supplements):
        w.step(
            "ns.kidney_function",
            "Kidney function is unknown and magnesium treatment or supplements are in question.",
            "high",
        )
    if "ppi" in w.current_classes:
        w.step("ns.ppi_baseline", "A proton-pump inhibitor is current.", "routine" if band else "high")
    lowering = [
        kb.drug_classes[c].name
        for c in w.current_classes
        if kb.drug_classes[c].effect == "lowers" and kb.drug_classes[c].weight
    ]
    if lowering and status in ("deficient", "likely_deficient"):
        w.step(
            "ns.review_culprit_drugs", f"Current drugs that lower magnesium: {', '.join(lowering)}.", "high"
        )
    if (
        w.facts.diet_mg_per_day is None
        and not w.facts.food_frequency
        and status in ("deficient", "likely_deficient", "at_risk")
    ):
        w.step("ns.diet_assessment", "Dietary magnesium intake is unknown.")
    if (
        (w.facts.supplements or "magnesium_product" in w.current_classes)
        and egfr.value is not None
        and egfr.value < kb.param("mds.egfr_reduced_below")
    ):
        w.step(
            "ns.recheck_on_supplement", "Magnesium products are taken with reduced kidney function.", "high"
        )
    cancer = [kb.drug_classes[c].name for c in _CANCER_THERAPY_CLASSES if c in w.current_classes]
    if cancer:
        w.step("ns.cancer_therapy_monitoring", f"Current {', '.join(cancer).lower()}.", "high")
    if "refeeding_syndrome" in w.current_conditions:
        w.step("ns.refeeding_monitoring", "Refeeding syndrome is on the problem list.", "high")


def _arrhythmia_risk(w: _Work, serum: SerumMagnesium) -> str | None:
    """Why a low or low-normal magnesium is an arrhythmia risk here, or ``None``.

    Low or low-normal means a current serum value below ``serum_mg.evidence_lower``
    (0.85 mmol/L), or no current value while a QT-prolonging drug or digoxin meets low
    potassium or calcium (unknown is not normal). It counts with low potassium or calcium, a
    QT-prolonging drug, digoxin or a sign of arrhythmia (S341, S346).
    """
    kb = w.kb
    partners = [kb.signs[s].name.lower() for s in _LOW_K_CA_SIGNS if s in w.present_signs]
    drugs = [
        kb.drugs[d].name
        for c in ("qt_prolonging", "cardiac_glycoside")
        for m in w.current_classes.get(c, ())
        for d in m.drugs
        if c in kb.drugs[d].classes
    ]
    signs = [kb.signs[s].name.lower() for s in _ECG_SIGNS if s in w.present_signs]
    low_mg = serum.current and serum.mmol_l is not None and serum.mmol_l < kb.param("serum_mg.evidence_lower")
    if low_mg and (partners or drugs or signs):
        with_what = ", ".join(dict.fromkeys([*partners, *drugs, *signs]))
        return f"serum magnesium {_fmt(serum.mmol_l or 0.0, 2)} mmol/L (below 0.85) with {with_what}"
    if not serum.current and drugs and partners:
        return f"no current serum magnesium, with {', '.join(dict.fromkeys([*partners, *drugs]))}"
    return None


def mds_high(w: _Work) -> bool:
    """Whether the MDS finding was counted as a major risk (band high)."""
    return "mds" in w.major


def _safety(
    w: _Work, status: Status, serum: SerumMagnesium, egfr: EgfrResult, supplements: SupplementResult
) -> None:
    kb = w.kb
    band = serum.band if serum.current else None
    symptomatic = sorted(set(w.present_signs) & set(_SYMPTOMATIC_SIGNS))
    treating = status in ("deficient", "likely_deficient")
    # Below the label's GFR limit the oral route is contraindicated (sf.renal_avoid_oral says
    # so); the oral-repletion advice is then not offered.
    oral_ok = egfr.value is None or egfr.value >= kb.param("egfr.supplement_avoid_below")
    refractory = [s for s in _REFRACTORY_SIGNS if s in w.present_signs]
    if status == "deficient":
        assert serum.mmol_l is not None
        if serum.mmol_l < kb.param("serum_mg.symptomatic_below") or symptomatic or refractory:
            why = (
                f"Serum magnesium {_fmt(serum.mmol_l, 2)} mmol/L"
                + (
                    f" with {', '.join(kb.signs[s].name.lower() for s in [*symptomatic, *refractory])}"
                    if symptomatic or refractory
                    else ""
                )
                + "."
            )
            w.safe("sf.severe_iv", why, "urgent")
            w.safe("sf.iv_monitoring", "Intravenous magnesium is in question.", "high")
            if symptomatic or refractory:
                w.safe("sf.iv_route_reason", f"Severity {w.severity_reason}.", "high")
            if w.facts.pregnant:
                w.safe("sf.pregnancy_iv_duration", "The patient is pregnant.", "high")
        elif oral_ok:
            w.safe(
                "sf.oral_mild", f"Serum magnesium {_fmt(serum.mmol_l, 2)} mmol/L without symptoms.", "high"
            )
    elif status == "likely_deficient" and oral_ok:
        w.safe(
            "sf.oral_mild",
            "If repletion is chosen after confirmation, the oral route fits a deficit without symptoms.",
        )
    if "torsades_de_pointes" in w.present_signs:
        w.safe(
            "sf.torsades",
            "Torsades de pointes was reported; IV magnesium is first-line whatever the serum value.",
            "urgent",
        )
    arrhythmia_risk = _arrhythmia_risk(w, serum)
    if arrhythmia_risk:
        w.safe("sf.qt_risk", _sentence(arrhythmia_risk), "urgent" if band == "below_lab_range" else "high")
    if w.mg_therapy:
        therapy = "; ".join(m.text for m in w.mg_therapy)
        above = (
            serum.current
            and serum.mmol_l is not None
            and serum.mmol_l > kb.param("mg_therapy.therapeutic_high")
        )
        if not above:
            # Above the therapeutic range sf.excess applies instead (toxicity: stop or reduce).
            w.safe("sf.mg_therapy", f"Magnesium therapy: {therapy}.", "high")
        w.safe(
            "sf.mg_infusion_monitoring",
            f"Magnesium therapy: {therapy}."
            + (
                f" Serum magnesium {_fmt(serum.mmol_l or 0.0, 2)} mmol/L is above the therapeutic range."
                if above
                else ""
            ),
            "urgent" if above else "high",
        )
        if w.facts.pregnant:
            w.safe(
                "sf.pregnancy_iv_duration", "The patient is pregnant and receives magnesium sulfate.", "high"
            )
    # Magnesium given or taken: a deficit to treat, supplements, or a magnesium-containing drug.
    oral_products = [m for m in w.current_classes.get("magnesium_product", ()) if m not in w.mg_therapy]
    taking_mg = bool(w.facts.supplements) or bool(oral_products)
    if (treating or taking_mg or w.mg_therapy) and egfr.value is not None:
        if egfr.value < kb.param("egfr.supplement_avoid_below"):
            if treating or taking_mg:
                w.safe("sf.renal_avoid_oral", f"eGFR {_fmt(egfr.value, 0)} mL/min/1.73 m².", "urgent")
            if treating or w.mg_therapy:
                w.safe("sf.iv_renal_limit", f"eGFR {_fmt(egfr.value, 0)} mL/min/1.73 m².", "high")
        elif egfr.value < kb.param("mds.egfr_reduced_below") and (treating or taking_mg):
            w.safe("sf.renal_reduce", f"eGFR {_fmt(egfr.value, 0)} mL/min/1.73 m².", "high")
    if "heart_block" in w.current_conditions and (treating or taking_mg):
        w.safe("sf.heart_block", "Heart block is on the problem list.", "urgent")
    if treating and (
        {"hypokalaemia", "hypocalcaemia", "refractory_hypokalaemia", "refractory_hypocalcaemia"}
        & w.present_signs
    ):
        w.safe("sf.correct_mg_first", "Low potassium or calcium is present.", "high")
    if status == "excess":
        grade = serum.ctcae_grade or 1
        w.safe(
            "sf.excess",
            f"Serum magnesium {_fmt(serum.mmol_l or 0, 2)} mmol/L (CTCAE grade {grade}).",
            "urgent" if grade >= 3 else "high",
        )
    kidney_impaired = (
        egfr.value is not None and egfr.value < kb.param("mds.egfr_reduced_below")
    ) or "chronic_kidney_disease" in w.current_conditions
    if kidney_impaired and (
        "magnesium_product" in w.current_classes or w.facts.supplements or status == "excess"
    ):
        w.safe(
            "sf.ckd_mg_products",
            "Reduced kidney function with magnesium-containing products or a high value.",
            "high",
        )
    if supplements.above_ul:
        w.safe(
            "sf.above_ul",
            f"About {supplements.elemental_mg_per_day or 0:.0f} mg/day of supplemental magnesium, above the UL of {supplements.ul_mg or 0:.0f} mg/day.",
            "high",
        )
    if "cardiac_glycoside" in w.current_classes:
        # Whatever the status: low magnesium raises the risk of digoxin toxicity (S20).
        w.safe("sf.digoxin", "Digoxin is current.", "high")
    # Interactions matter when magnesium is, or may be, given; rows whose advice is a magnesium
    # check apply whenever the drug is current.
    giving_mg = treating or bool(w.facts.supplements) or "magnesium_product" in w.current_classes
    current_drugs = {d for m in w.facts.medications or () if m.current for d in m.drugs}
    for row in kb.interactions:
        if giving_mg or row.check_mg:
            hit = sorted(current_drugs & set(row.drugs)) + sorted(
                c for c in row.classes if c in w.current_classes
            )
            if hit:
                names = ", ".join(kb.drugs[h].name if h in kb.drugs else kb.drug_classes[h].name for h in hit)
                w.safety[f"ix.{row.id}"] = Action(
                    f"ix.{row.id}",
                    f"{row.name}: {row.effect} {row.advice}",
                    f"Current: {names}.",
                    row.sources,
                    "routine",
                )


def _relevance(w: _Work, mds: MdsResult) -> tuple[Relevance, ...]:
    kb = w.kb
    out = []
    for domain in kb.outcomes.values():
        why = [kb.conditions[c].name for c in domain.condition_triggers if c in w.current_conditions]
        why += [kb.signs[s].name for s in domain.sign_triggers if s in w.present_signs]
        if domain.id == "cardiovascular" and mds.band == "high":
            why.append("MDS in the high band (associated with cardiovascular mortality in cohorts)")
        if not why:
            continue
        evidence = tuple(
            {"text": e.text, "effect": e.effect, "strength": e.strength, "sources": list(e.sources)}
            for e in domain.evidence
        )
        sources = tuple(dict.fromkeys([*domain.sources, *(s for e in domain.evidence for s in e.sources)]))
        out.append(Relevance(domain.id, domain.name, "; ".join(dict.fromkeys(why)), evidence, sources))
    return tuple(out)


def _limitations(w: _Work, serum: SerumMagnesium, mds: MdsResult, egfr: EgfrResult) -> None:
    kb = w.kb
    w.limit("lim.decision_support", "Always.")
    if w.facts.excluded:
        w.limit(
            "lim.excluded_input",
            f"{len(w.facts.excluded)} entries left out: " + "; ".join(w.facts.excluded[:5]),
        )
    if serum.mmol_l is None:
        w.limit("lim.no_serum_mg", "No serum magnesium result was available.")
    elif serum.current and serum.band in ("normal", "low_normal"):
        w.limit("lim.serum_partial", "Serum magnesium is not low.")
    if serum.current and serum.band in ("normal", "above_lab_range"):
        w.limit("lim.haemolysis", "A haemolysed sample reads falsely high.")
    if mds.score is not None:
        w.limit("lim.mds_not_diagnostic", "The MDS was computed.")
        if egfr.value is not None:
            near = [
                c
                for c in (kb.param("mds.egfr_mild_below"), kb.param("mds.egfr_reduced_below"))
                if abs(egfr.value - c) <= 0.1 * c
            ]
            if near:
                w.limit(
                    "lim.mds_equation",
                    f"eGFR {_fmt(egfr.value, 0)} is close to the MDS cut-off of {_fmt(near[0], 0)}.",
                )
    if w.alcohol_proxy:
        w.limit(
            "lim.mds_cohort_alcohol_proxy",
            "The alcohol item was inferred from a diagnosis or an AUDIT-C score.",
        )


def _summary(status: Status, severity: str | None, serum: SerumMagnesium, mds: MdsResult, w: _Work) -> str:
    label = {
        "excess": "Magnesium excess",
        "deficient": "Magnesium deficiency",
        "likely_deficient": "Magnesium deficiency likely",
        "at_risk": "At risk of magnesium deficiency",
        "unlikely": "Magnesium deficiency unlikely",
        "indeterminate": "Magnesium status cannot be judged from what is known",
    }[status]
    if severity:
        label += f" ({severity})"
    if any(f.id == "serum_mg.therapeutic" for f in w.findings):
        label = "Serum magnesium within the therapeutic range of magnesium therapy (not excess)"
    parts = []
    if serum.mmol_l is not None:
        parts.append(
            f"serum Mg {_fmt(serum.mmol_l, 2)} mmol/L"
            + (f" ({serum.band.replace('_', ' ')})" if serum.band else " (not recent)")
        )
    else:
        parts.append("no serum Mg")
    if mds.score is not None:
        parts.append(f"MDS {mds.score}{'' if mds.complete else '+?'}")
    drivers = [
        f.id.split(".", 1)[-1].replace("_", " ")
        for f in w.findings
        if f.weight == "major" and f.category == "risk_factor"
    ]
    if drivers:
        parts.append("major risk: " + ", ".join(dict.fromkeys(drivers)))
    return f"{label}: " + "; ".join(parts) + "."
