"""Tests of the shipped knowledge base and of the strict loader that reads it."""

# The project writes asserts as `expected == actual` (STYLE.md, practice 11).

from __future__ import annotations

import re
import shutil
import tomllib
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

import magstat.kb
from magstat.core.units import parse_unit, to_canonical
from magstat.errors import KnowledgeBaseError
from magstat.kb import FILES, load_dir
from magstat.kb.cache import per_kb
from magstat.kb.schema import EVIDENCE_LEVELS, KnowledgeBase, build

DATA = Path(magstat.kb.__file__).parent / "data"

REQUIRED_PARAMETERS = (
    "serum_mg.evidence_lower",
    "serum_mg.symptomatic_below",
    "serum_mg.ctcae_hypo_grade2_below",
    "serum_mg.ctcae_hypo_grade3_below",
    "serum_mg.ctcae_hypo_grade4_below",
    "serum_mg.ctcae_hyper_grade3_above",
    "serum_mg.ctcae_hyper_grade4_above",
    "serum_mg.reflexes_diminish_above",
    "femg.ultrafilterable_fraction",
    "femg.renal_above",
    "femg.extrarenal_below",
    "femg.max_gap_days",
    "femg.reduced_gfr_below",
    "urine_mg_24h.renal_wasting_above",
    "loading.retention_deficient_above",
    "loading.retention_borderline_above",
    "mds.egfr_mild_below",
    "mds.egfr_reduced_below",
    "mds.band_middle",
    "mds.band_high",
    "alcohol.heavy_female_above",
    "alcohol.heavy_male_above",
    "alcohol.grams_per_drink",
    "audit_c.positive_female_at_least",
    "audit_c.positive_male_at_least",
    "ppi.long_term_days",
    "ppi.min_days",
    "egfr.supplement_avoid_below",
    "ckd_epi.constant",
    "ckd_epi.kappa_female",
    "ckd_epi.kappa_male",
    "ckd_epi.alpha_female",
    "ckd_epi.alpha_male",
    "ckd_epi.exponent_high",
    "ckd_epi.age_base",
    "ckd_epi.female_factor",
    "ckd_epi.min_age",
    "age.older_adult_at_least",
    "labs.recent_days",
)

REQUIRED_STATEMENTS = {
    "next_step": (
        "ns.measure_serum_mg",
        "ns.femg_or_24h_urine",
        "ns.body_stores",
        "ns.loading_test_grey_zone",
        "ns.check_k_ca",
        "ns.ecg",
        "ns.ecg_high_mg",
        "ns.kidney_function",
        "ns.kidney_function_high_mg",
        "ns.ppi_baseline",
        "ns.review_culprit_drugs",
        "ns.diet_assessment",
        "ns.recheck_on_supplement",
        "ns.cancer_therapy_monitoring",
        "ns.refeeding_monitoring",
        "ns.dka_monitoring",
    ),
    "safety": (
        "sf.severe_iv",
        "sf.severe_iv_heart_block",
        "sf.severe_during_therapy",
        "sf.oral_mild",
        "sf.low_despite_oral",
        "sf.mg_allergy",
        "sf.renal_avoid_oral",
        "sf.renal_reduce",
        "sf.iv_renal_limit",
        "sf.heart_block",
        "sf.correct_mg_first",
        "sf.torsades",
        "sf.torsades_high_mg",
        "sf.excess",
        "sf.above_ul",
        "sf.transdermal",
        "sf.digoxin",
        "sf.iv_monitoring",
        "sf.pregnancy_iv_duration",
        "sf.ckd_mg_products",
        "sf.cns_depressants",
    ),
    "limitation": (
        "lim.serum_partial",
        "lim.serum_during_therapy",
        "lim.relevance_excess",
        "lim.total_calcium_low_albumin",
        "lim.mg_low_albumin",
        "lim.no_serum_mg",
        "lim.haemolysis",
        "lim.mds_not_diagnostic",
        "lim.mds_equation",
        "lim.mds_incomplete",
        "lim.rbc_no_standard",
        "lim.ionised_method",
        "lim.femg_conditions",
        "lim.loading_invalid",
        "lim.urine_reflects_intake",
        "lim.default_interval",
        "lim.old_result",
        "lim.ckd_epi_adults",
        "lim.cramps",
        "lim.decision_support",
        "lim.intake_estimate",
        "lim.mds_cohort_alcohol_proxy",
    ),
    "explanation": ("ex.grey_zone", "ex.mds", "ex.femg"),
}

REQUIRED_TESTS = {
    "serum_mg": "mmol/L",
    "rbc_mg": "mmol/L",
    "ionised_mg": "mmol/L",
    "urine_mg_24h": "mmol/d",
    "urine_mg_spot": "mmol/L",
    "urine_creatinine": "mg/dL",
    "serum_creatinine": "mg/dL",
    "egfr": "mL/min/{1.73_m2}",
    "potassium": "mmol/L",
    "calcium_total": "mmol/L",
    "calcium_ionised": "mmol/L",
    "calcium_corrected": "mmol/L",
    "albumin": "g/L",
    "loading_retention": "%",
    "alcohol_drinks_per_day": "{drinks}/d",
    "audit_c": "{score}",
}

REQUIRED_CLASSES = (
    "ppi",
    "loop_diuretic",
    "thiazide_diuretic",
    "potassium_sparing_diuretic",
    "aminoglycoside",
    "amphotericin_b",
    "pentamidine",
    "foscarnet",
    "platinum",
    "calcineurin_inhibitor",
    "anti_egfr_antibody",
    "cardiac_glycoside",
    "sglt2_inhibitor",
    "laxative",
    "insulin",
    "magnesium_product",
    "tetracycline",
    "fluoroquinolone",
    "bisphosphonate",
    "levothyroxine",
    "gabapentin",
    "integrase_inhibitor",
    "calcium_channel_blocker",
    "metformin",
)

REQUIRED_SIGNS = {
    "tetany": "specific",
    "chvostek_sign": "specific",
    "trousseau_sign": "specific",
    "torsades_de_pointes": "specific",
    "refractory_hypokalaemia": "specific",
    "refractory_hypocalcaemia": "specific",
    "seizure": "supportive",
    "arrhythmia": "supportive",
    "qt_prolongation": "supportive",
    "hypokalaemia": "supportive",
    "hypocalcaemia": "supportive",
    "fasciculations": "supportive",
    "tremor": "supportive",
    "muscle_cramps": "nonspecific",
    "weakness": "nonspecific",
    "fatigue": "nonspecific",
    "insomnia_symptom": "nonspecific",
    "depressed_mood": "nonspecific",
    "anxiety_symptom": "nonspecific",
    "high_blood_pressure": "nonspecific",
    "poor_glycaemic_control": "nonspecific",
    "nausea": "nonspecific",
    "apathy_confusion": "nonspecific",
}


def _documents() -> tuple[dict[str, Any], dict[str, bytes]]:
    raw = {name: (DATA / name).read_bytes() for name in FILES}
    docs = {name: tomllib.loads(data.decode("utf-8")) for name, data in raw.items()}
    return docs, raw


def _copy_data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(DATA, folder)
    return folder


def _all_cited(kb: KnowledgeBase) -> list[tuple[str, tuple[str, ...]]]:
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
        cited.extend((entry_id, entry.sources) for entry_id, entry in table.items())
    cited.extend((row.id, row.sources) for row in (*kb.dri, *kb.interactions))
    for outcome in kb.outcomes.values():
        cited.extend((f"{outcome.id} evidence", ev.sources) for ev in outcome.evidence)
    return cited


# --- The shipped knowledge base -------------------------------------------------------------


def test_shipped_kb_loads(kb: KnowledgeBase) -> None:
    """The shipped knowledge base loads with the strict reader and carries its version."""
    assert re.fullmatch(r"\d{4}\.\d{1,2}\.\d+", kb.version)
    assert kb.version == kb.history[-1]["version"]
    assert 64 == len(kb.sha256)


def test_load_dir_matches_packaged_load(kb: KnowledgeBase) -> None:
    """Loading the data folder directly gives the same content hash as the packaged load (the kb fixture)."""
    assert kb.sha256 == load_dir(DATA).sha256


def test_every_source_reference_resolves(kb: KnowledgeBase) -> None:
    """Every entry names at least one source, and every named source is defined."""
    for entry_id, sources in _all_cited(kb):
        assert sources, entry_id
        missing = [s for s in sources if s not in kb.sources]
        assert [] == missing, entry_id


def test_sources_are_well_formed(kb: KnowledgeBase) -> None:
    """Every source has a known evidence level and a url, doi or pmid unless it is a project choice."""
    for source in kb.sources.values():
        assert source.evidence_level in EVIDENCE_LEVELS
        if source.evidence_level != "project-choice":
            assert source.url or source.doi or source.pmid, source.id
    assert "project-choice" == kb.sources["MAGSTAT"].evidence_level
    assert "regulatory" == kb.sources["FDA-CDS-2022"].evidence_level


def test_required_parameters_exist(kb: KnowledgeBase) -> None:
    """Every parameter the core reads is defined."""
    missing = [p for p in REQUIRED_PARAMETERS if p not in kb.parameters]
    assert [] == missing


@pytest.mark.parametrize(
    ("param_id", "value"),
    [
        ("serum_mg.evidence_lower", 0.85),
        ("serum_mg.symptomatic_below", 0.5),
        ("serum_mg.ctcae_hypo_grade3_below", 0.4),
        ("serum_mg.ctcae_hyper_grade4_above", 3.30),
        ("femg.ultrafilterable_fraction", 0.7),
        ("femg.renal_above", 4),
        ("urine_mg_24h.renal_wasting_above", 1.0),
        ("mds.egfr_reduced_below", 60),
        ("alcohol.grams_per_drink", 14),
        ("audit_c.positive_female_at_least", 3),
        ("audit_c.positive_male_at_least", 4),
        ("egfr.supplement_avoid_below", 30),
        ("ckd_epi.constant", 142),
        ("ckd_epi.alpha_male", -0.302),
        ("ckd_epi.age_base", 0.9938),
    ],
)
def test_parameter_values_match_the_brief(kb: KnowledgeBase, param_id: str, value: float) -> None:
    """Key thresholds carry the values published in the cited sources."""
    assert value == kb.param(param_id)


def test_required_statements_exist_with_their_kind(kb: KnowledgeBase) -> None:
    """Every statement id the core attaches exists and has the expected kind."""
    for kind, ids in REQUIRED_STATEMENTS.items():
        for statement_id in ids:
            assert kind == kb.statement(statement_id).kind, statement_id


def test_required_tests_exist_with_canonical_units(kb: KnowledgeBase) -> None:
    """Every lab test the core reads exists with exactly the agreed canonical unit."""
    actual = {test_id: kb.tests[test_id].canonical_unit for test_id in REQUIRED_TESTS}
    assert REQUIRED_TESTS == actual


def test_canonical_units_are_understood_by_the_unit_module(kb: KnowledgeBase) -> None:
    """The unit module recognises every canonical unit of the knowledge base."""
    unknown = [t.id for t in kb.tests.values() if parse_unit(t.canonical_unit) is None]
    assert [] == unknown


def test_default_intervals_lie_inside_plausible_limits(kb: KnowledgeBase) -> None:
    """Default reference limits fall inside the plausibility limits of their test."""
    for test in kb.tests.values():
        for limit in (test.default_low, test.default_high):
            if limit is not None:
                assert test.plausible_low <= limit <= test.plausible_high, test.id


def test_required_drug_classes_exist(kb: KnowledgeBase) -> None:
    """Every drug class the core reads exists."""
    missing = [c for c in REQUIRED_CLASSES if c not in kb.drug_classes]
    assert [] == missing


def test_mds_components_are_the_diuretics_and_ppis(kb: KnowledgeBase) -> None:
    """Loop, thiazide and potassium-sparing diuretics count as MDS diuretics and PPIs as MDS PPIs."""
    components = {c.id: c.mds_component for c in kb.drug_classes.values() if c.mds_component}
    expected = {
        "ppi": "ppi",
        "loop_diuretic": "diuretic",
        "thiazide_diuretic": "diuretic",
        "potassium_sparing_diuretic": "diuretic",
    }
    assert expected == components


def test_weight_only_on_classes_that_lower_magnesium(kb: KnowledgeBase) -> None:
    """Classes that lower magnesium have a weight; classes that raise it or interact have none."""
    for cls in kb.drug_classes.values():
        assert (cls.effect == "lowers") == (cls.weight is not None), cls.id


def test_required_signs_exist_with_their_specificity(kb: KnowledgeBase) -> None:
    """Every sign the core reads exists with the specificity the brief assigns."""
    actual = {sign_id: kb.signs[sign_id].specificity for sign_id in REQUIRED_SIGNS}
    assert REQUIRED_SIGNS == actual


def test_outcome_domains_exist(kb: KnowledgeBase) -> None:
    """The six outcome domains exist and each has evidence."""
    expected = {
        "cardiovascular",
        "metabolic",
        "neuroendocrine",
        "skeletal",
        "blood_pressure",
        "sleep_recovery",
    }
    assert expected == set(kb.outcomes)
    for outcome in kb.outcomes.values():
        assert outcome.evidence, outcome.id


def test_transdermal_does_not_count_toward_intake(kb: KnowledgeBase) -> None:
    """Transdermal magnesium is not counted toward intake and has no elemental percentage."""
    transdermal = kb.supplements["transdermal"]
    assert (False, None) == (transdermal.counts_toward_intake, transdermal.elemental_percent)


def test_dri_rows_cover_adults_without_gaps(kb: KnowledgeBase) -> None:
    """For each sex the non-pregnant DRI rows cover ages 0 to 200 years without gaps or overlaps."""
    for sex in ("female", "male"):
        rows = sorted(
            (r for r in kb.dri if r.state == "none" and r.sex in (sex, "any")), key=lambda r: r.age_min
        )
        assert 0 == rows[0].age_min
        assert 200 == rows[-1].age_max
        for before, after in pairwise(rows):
            assert before.age_max == after.age_min, (sex, before.id, after.id)


def test_adult_dri_values(kb: KnowledgeBase) -> None:
    """The adult RDAs and the supplemental UL match IOM 1997."""
    by_id = {r.id: r for r in kb.dri}
    assert (400, 310, 420, 320) == (
        by_id["dri-m-19-31"].rda_mg,
        by_id["dri-f-19-31"].rda_mg,
        by_id["dri-m-51-200"].rda_mg,
        by_id["dri-f-51-200"].rda_mg,
    )
    assert 350 == by_id["dri-f-19-31"].ul_supplemental_mg


# --- Units ---------------------------------------------------------------------------------


def test_magnesium_molar_mass(kb: KnowledgeBase) -> None:
    """Magnesium has molar mass 24.305 g/mol and valence 2."""
    magnesium = kb.analytes["magnesium"]
    assert (24.305, 2) == (magnesium.molar_mass_g_mol, magnesium.valence)


def test_unit_conversion_anchor_evidence_lower(kb: KnowledgeBase) -> None:
    """2.07 mg/dL of serum magnesium converts to 0.85 mmol/L (within 0.01)."""
    assert 0.85 == pytest.approx(to_canonical(kb, "serum_mg", 2.07, "mg/dL"), abs=0.01)


def test_unit_conversion_anchor_meq(kb: KnowledgeBase) -> None:
    """1.7 mEq/L of serum magnesium converts to 0.85 mmol/L."""
    assert 0.85 == pytest.approx(to_canonical(kb, "serum_mg", 1.7, "mEq/L"))


def test_creatinine_umol_conversion(kb: KnowledgeBase) -> None:
    """88.4 umol/L of creatinine converts to 1.0 mg/dL (within 0.001)."""
    assert 1.0 == pytest.approx(to_canonical(kb, "serum_creatinine", 88.4, "umol/L"), abs=0.001)


# --- Codes ---------------------------------------------------------------------------------


def test_no_loinc_code_maps_to_two_tests(kb: KnowledgeBase) -> None:
    """Each LOINC code belongs to exactly one lab test."""
    counts = Counter(code.code for test in kb.tests.values() for code in test.loinc)
    assert [] == [code for code, n in counts.items() if n > 1]


def test_no_drug_code_listed_twice(kb: KnowledgeBase) -> None:
    """No RxNorm or ATC code is listed twice across drugs."""
    rxnorm = Counter(code for drug in kb.drugs.values() for code in drug.rxnorm)
    atc = Counter(code for drug in kb.drugs.values() for code in drug.atc)
    assert [] == [c for c, n in (*rxnorm.items(), *atc.items()) if n > 1]


def test_no_condition_or_sign_code_listed_twice(kb: KnowledgeBase) -> None:
    """No SNOMED CT or ICD-10-CM code appears twice across conditions and signs together."""
    entries = [*kb.conditions.values(), *kb.signs.values()]
    snomed = Counter(code for entry in entries for code in entry.snomed)
    icd10 = Counter(code for entry in entries for code in entry.icd10)
    assert [] == [c for c, n in (*snomed.items(), *icd10.items()) if n > 1]


def test_egfr_codes_name_their_equation(kb: KnowledgeBase) -> None:
    """Each eGFR LOINC code's note starts with the name of its equation."""
    for code in kb.tests["egfr"].loinc:
        assert code.note is not None
        assert code.note.startswith(("CKD-EPI 2021", "CKD-EPI 2009", "MDRD")), code.code


# --- The strict loader ---------------------------------------------------------------------


def test_loader_refuses_uncited_entry() -> None:
    """An entry without sources is refused."""
    docs, raw = _documents()
    del docs["parameters.toml"]["parameters"]["serum_mg.evidence_lower"]["sources"]
    with pytest.raises(KnowledgeBaseError, match="uncited"):
        build(docs, raw)


def test_loader_refuses_unknown_key() -> None:
    """An entry with a key the schema does not know is refused."""
    docs, raw = _documents()
    docs["signs.toml"]["signs"]["tetany"]["colour"] = "red"
    with pytest.raises(KnowledgeBaseError, match="unknown key"):
        build(docs, raw)


def test_loader_refuses_unknown_source_id() -> None:
    """An entry citing a source that sources.toml does not define is refused."""
    docs, raw = _documents()
    docs["drugs.toml"]["drugs"]["omeprazole"]["sources"] = ["S999"]
    with pytest.raises(KnowledgeBaseError, match="S999"):
        build(docs, raw)


def test_loader_refuses_malformed_value() -> None:
    """A parameter whose value is not a number is refused."""
    docs, raw = _documents()
    docs["parameters.toml"]["parameters"]["femg.renal_above"]["value"] = "four"
    with pytest.raises(KnowledgeBaseError, match="expected a number"):
        build(docs, raw)


def test_loader_refuses_broken_file_on_disk(tmp_path: Path) -> None:
    """A copied data folder with one uncited entry written to disk is refused by load_dir."""
    folder = _copy_data(tmp_path)
    with (folder / "statements.toml").open("a", encoding="utf-8") as handle:
        handle.write('\n[statements."lim.extra"]\nkind = "limitation"\ntext = "No source."\n')
    with pytest.raises(KnowledgeBaseError, match="uncited"):
        load_dir(folder)


def test_loader_refuses_invalid_toml(tmp_path: Path) -> None:
    """A data file that is not valid TOML is refused with the file name."""
    folder = _copy_data(tmp_path)
    (folder / "signs.toml").write_text("[signs.tetany\n", encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match=re.escape("signs.toml")):
        load_dir(folder)


def test_loader_refuses_history_not_matching_version(tmp_path: Path) -> None:
    """A kb_version without a matching last history row is refused."""
    folder = _copy_data(tmp_path)
    manifest = folder / "manifest.toml"
    manifest.write_text(
        re.sub(r'kb_version = "[^"]+"', 'kb_version = "2099.1.0"', manifest.read_text(encoding="utf-8")),
        encoding="utf-8",
    )
    with pytest.raises(KnowledgeBaseError, match="history"):
        load_dir(folder)


def test_sha256_changes_when_a_file_changes(tmp_path: Path) -> None:
    """Changing any byte of a data file changes the knowledge-base hash."""
    folder = _copy_data(tmp_path)
    before = load_dir(folder).sha256
    with (folder / "signs.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n# a comment changes the bytes\n")
    assert before != load_dir(folder).sha256


def test_per_kb_builds_once_per_content(kb: KnowledgeBase, tmp_path: Path) -> None:
    """A per_kb function runs once per knowledge-base content and again for a different one."""
    calls: list[str] = []

    @per_kb
    def count_drugs(base: KnowledgeBase, label: str) -> int:
        calls.append(label)
        return len(base.drugs)

    assert len(kb.drugs) == count_drugs(kb, "a")
    assert len(kb.drugs) == count_drugs(kb, "a")
    assert ["a"] == calls
    folder = _copy_data(tmp_path)
    with (folder / "signs.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n# a comment changes the content hash\n")
    count_drugs(load_dir(folder), "a")
    assert ["a", "a"] == calls
