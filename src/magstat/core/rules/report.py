"""Outcome-domain relevance, the limitations of the assessment and its one-line summary."""

from __future__ import annotations

from operator import attrgetter

from magstat.core.result import EgfrResult, MdsResult, Relevance, SerumMagnesium, Status, new_relevance
from magstat.core.rules.work import _fmt, _low_albumin, _mg_shown, _therapy_reached, _Work


def _relevance(w: _Work, mds: MdsResult, status: Status) -> tuple[Relevance, ...]:
    """The outcome domains that the patient's current conditions or signs (or a high MDS) make relevant.

    Why: the names of the domain's condition triggers, then of its sign triggers, that the
    patient has, in the domain's order. They are found from the patient's few conditions and
    signs (each knows the domains and places it triggers), not by walking every domain's list.

    None while magnesium is in excess: the domains' evidence is about low magnesium and more
    intake, which must not read as a reason for more magnesium then (a limitation says so).
    """
    if status == "excess":
        return ()  # lim.relevance_excess says why
    p = w.p
    found: dict[int, list[tuple[int, str]]] = {}
    for table, present in (
        (p.condition_relevance, w.current_conditions),
        (p.sign_relevance, w.present_signs),
    ):
        for trigger in present:
            for index, place, name in table.get(trigger, ()):
                hits = found.get(index)
                if hits is None:
                    found[index] = [(place, name)]
                else:
                    hits.append((place, name))
    high_mds = mds.band == "high"
    if high_mds:
        for index in p.cardiovascular_domains:
            found.setdefault(index, [])
    out = []
    for index in sorted(found):
        prepared = p.domains[index]
        domain = prepared.domain
        hits = found[index]
        why = [name for _, name in sorted(hits)] if len(hits) > 1 else [hits[0][1]] if hits else []
        if high_mds and domain.id == "cardiovascular":
            why.append("MDS in the high band (associated with cardiovascular mortality in cohorts)")
        # New dicts and source lists for each assessment (a caller may change its copy); the
        # texts are shared.
        evidence = []
        for form, sources in prepared.evidence_forms:
            row = form.copy()
            row["sources"] = [*sources]
            evidence.append(row)
        out.append(
            new_relevance(
                domain.id, domain.name, "; ".join(dict.fromkeys(why)), tuple(evidence), prepared.sources
            )
        )
    return tuple(out)


EXCLUDED_NAMED = 5
"""How many entries left out the limitation ``lim.excluded_input`` names; reports list the rest."""


def _limitations(w: _Work, serum: SerumMagnesium, mds: MdsResult, egfr: EgfrResult, status: Status) -> None:
    w.limit_fixed("lim.decision_support", "Always.")
    if status == "excess":
        w.limit_fixed("lim.relevance_excess", "Magnesium is in excess.")
    if w.facts.excluded:
        w.limit(
            "lim.excluded_input",
            f"{len(w.facts.excluded)} entries left out: " + "; ".join(w.facts.excluded[:EXCLUDED_NAMED]),
        )
    if serum.current and serum.band in ("normal", "low_normal") and _therapy_reached(w, serum.date):
        w.limit("lim.serum_during_therapy", f"Given: {'; '.join(m.text for m in w.mg_therapy)}.")
    if serum.mmol_l is None:
        w.limit_fixed("lim.no_serum_mg", "No serum magnesium result was available.")
    elif serum.current and serum.band in ("normal", "low_normal"):
        w.limit_fixed("lim.serum_partial", "Serum magnesium is not low.")
    if serum.current and serum.band in ("normal", "above_lab_range"):
        w.limit_fixed("lim.haemolysis", "A haemolysed sample reads falsely high.")
    elif serum.current and serum.band in ("below_lab_range", "low_normal"):
        albumin = _low_albumin(w)
        if albumin is not None and albumin.ref_low is not None:
            w.limit(
                "lim.mg_low_albumin",
                f"Albumin {_fmt(albumin.value, 0)} g/L is below {_fmt(albumin.ref_low, 0)} g/L.",
            )
    if mds.score is not None:
        w.limit_fixed("lim.mds_not_diagnostic", "The MDS was computed.")
        if egfr.value is not None and egfr.comparator is None:
            near = [
                c
                for c in (w.p.params["mds.egfr_mild_below"], w.p.params["mds.egfr_reduced_below"])
                if abs(egfr.value - c) <= 0.1 * c
            ]
            if near:
                w.limit(
                    "lim.mds_equation",
                    f"eGFR {_fmt(egfr.value, 0)} is close to the MDS cut-off of {_fmt(near[0], 0)}.",
                )
    if w.alcohol_proxy:
        w.limit_fixed(
            "lim.mds_cohort_alcohol_proxy",
            "The alcohol item was inferred from a diagnosis or an AUDIT-C score.",
        )


_ID = attrgetter("id")

_LABELS = {
    "excess": "Magnesium excess",
    "deficient": "Magnesium deficiency",
    "likely_deficient": "Magnesium deficiency likely",
    "at_risk": "At risk of magnesium deficiency",
    "unlikely": "Magnesium deficiency unlikely",
    "indeterminate": "Magnesium status cannot be judged from what is known",
}


def _summary(status: Status, severity: str | None, serum: SerumMagnesium, mds: MdsResult, w: _Work) -> str:
    label = _LABELS[status]
    if severity:
        label += f" ({severity})"
    if "serum_mg.therapeutic" in map(_ID, w.findings):
        label = "Serum magnesium within the therapeutic range of magnesium therapy (not excess)"
    parts = []
    if serum.mmol_l is not None:
        parts.append(
            f"serum Mg {_mg_shown(serum)} mmol/L"
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
