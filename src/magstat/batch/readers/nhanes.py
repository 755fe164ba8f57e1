"""NHANES input for researchers: the public-use CSV files of one or more 2-year cycles.

A folder holds, per cycle with file suffix ``X`` (``J`` = 2017-2018, ``I`` = 2015-2016 ... ``C``
= 2003-2004): ``DEMO_X`` (required), ``BIOPRO_X`` (``L40_C`` for 2003-2004), ``RXQ_RX_X``,
``ALQ_X`` and ``DR1TOT_X``; ``RXQ_DRUG`` (the Multum drug list, shared by all cycles) is
optional. Each file is ``.csv`` or gzip-compressed ``.csv.gz``. Each participant (``SEQN``) becomes :class:`~magstat.core.facts.PatientFacts`:

- age ``RIDAGEYR`` (top-coded at 80), sex ``RIAGENDR``, pregnancy ``RIDEXPRG``;
- serum creatinine ``LBXSCR`` (mg/dL), from which the core computes CKD-EPI 2021 eGFR;
- prescription drugs taken in the past 30 days (``RXQ_RX``: ``RXDUSE``, ``RXDDRUG``,
  ``RXDDAYS``), recognised by the knowledge base from the Multum generic names, which list
  each ingredient of a combination product ("HYDROCHLOROTHIAZIDE; LISINOPRIL"); ``RXDUSE`` = 2
  is a known empty list, a refusal or no answer is unknown;
- alcohol as average drinks per day, by ``--nhanes-alcohol``: ``recall`` (the default) is the
  day-1 24-hour recall, ``DR1TALCO`` grams divided by the knowledge base's grams per standard
  drink, when the recall is reliable (``DR1DRSTZ`` = 1); ``alq`` is the questionnaire: drinks
  on a drinking day (``ALQ130``) times drinking days a year (``ALQ121``, or ``ALQ120Q`` with
  ``ALQ120U`` before 2017) over 365, and 0 for people who never drank (``ALQ111`` = 2, or
  ``ALQ110`` = 2 before 2017) or not in the past year;
- dietary magnesium ``DR1TMAGN`` (mg/day, reliable recalls), compared by the core with the EAR.

The study cohort (``in_cohort``) follows the published Magnesium Depletion Score papers:
adults aged 20 and over, not pregnant, with every MDS component known; the survey weight is
the day-1 dietary weight ``WTDRD1`` when alcohol comes from the recall, else the examination
weight ``WTMEC2YR``, divided by the number of cycles combined (NCHS guidance for pooling
cycles). ``docs/screening.md`` compares the result with the published tables.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from magstat.batch.rows import Job, PatientResult, assess_facts
from magstat.core.facts import Lab, Medication, Origin, PatientFacts
from magstat.core.match import match_drug
from magstat.core.units import to_canonical
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase

__all__ = [
    "CYCLES",
    "EXTRA_COLUMNS",
    "AlcoholSource",
    "NhanesSource",
    "assess_participant",
    "discover",
    "participants",
]

AlcoholSource = Literal["recall", "alq"]

CYCLES: dict[str, str] = {
    "C": "2003-2004",
    "D": "2005-2006",
    "E": "2007-2008",
    "F": "2009-2010",
    "G": "2011-2012",
    "H": "2013-2014",
    "I": "2015-2016",
    "J": "2017-2018",
}
"""Supported cycles by file suffix."""

EXTRA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cycle", "string"),
    ("in_cohort", "bool"),
    ("cohort_exclusion", "string"),
    ("survey_weight", "float"),
    ("sdmvpsu", "int"),
    ("sdmvstra", "int"),
    ("diuretic_multum", "bool"),
    ("ppi_multum", "bool"),
)
"""Columns NHANES adds to each results row."""

COHORT_MIN_AGE = 20
"""Adults aged 20 and over, as in the published MDS analyses of NHANES."""

# Drinking days a year for each ALQ121 answer (2017-2018 codebook): the middle of each range.
_ALQ121_DAYS = {1: 365.0, 2: 286.0, 3: 182.0, 4: 104.0, 5: 52.0, 6: 30.0, 7: 12.0, 8: 9.0, 9: 4.5, 10: 1.5}
# ALQ120U: the unit of ALQ120Q (1 week, 2 month, 3 year), as periods a year.
_ALQ120U_PER_YEAR = {1: 52.0, 2: 12.0, 3: 1.0}
# Multum therapeutic categories (RXQ_DRUG) that the MDS papers count: 49 diuretics (with its
# subcategories 154-158) and 272 proton-pump inhibitors. Used only to report agreement with
# the knowledge base, never to score.
_MULTUM_DIURETIC = {"49", "154", "155", "156", "157", "158"}
_MULTUM_PPI = {"272"}
_UNKNOWN_DRUG = {"55555", "77777", "99999"}


@dataclass(frozen=True, slots=True)
class NhanesSource:
    """The NHANES files found in a folder, by cycle."""

    root: Path
    cycles: dict[str, dict[str, Path]]
    drug_table: Path | None

    @property
    def files(self) -> list[Path]:
        """Every file that is read."""
        paths = [p for files in self.cycles.values() for p in files.values()]
        return sorted(paths + ([self.drug_table] if self.drug_table else []))


_FILE = re.compile(r"^(DEMO|BIOPRO|L40|RXQ_RX|ALQ|DR1TOT)_([A-Z])\.csv(?:\.gz)?$", re.IGNORECASE)


def _open_csv(path: Path) -> io.TextIOBase:
    """A CSV file for reading, plain or gzip-compressed (by its name)."""
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open(newline="", encoding="utf-8-sig")


def discover(root: Path) -> NhanesSource:
    """Find the NHANES CSV files of each supported cycle in a folder.

    Raises:
        InvalidInputError: not a folder, no ``DEMO_X.csv``, or an unsupported cycle.

    """
    if not root.is_dir():
        raise InvalidInputError(str(root), "not a folder", allowed="a folder of NHANES CSV files")
    cycles: dict[str, dict[str, Path]] = {}
    drug_table = None
    for path in sorted(root.iterdir()):
        if path.name.upper() in ("RXQ_DRUG.CSV", "RXQ_DRUG.CSV.GZ"):
            drug_table = path
            continue
        found = _FILE.match(path.name)
        if not found:
            continue
        kind, suffix = found.group(1).upper(), found.group(2).upper()
        if kind == "L40":
            kind = "BIOPRO"
        if suffix not in CYCLES:
            raise InvalidInputError(
                path.name, "cycle not supported", allowed=", ".join(f"_{s} ({y})" for s, y in CYCLES.items())
            )
        cycles.setdefault(suffix, {})[kind] = path
    for suffix, files in cycles.items():
        if "DEMO" not in files:
            raise InvalidInputError(
                f"DEMO_{suffix}.csv", "missing: the demographics file defines the participants"
            )
    if not cycles:
        raise InvalidInputError(
            str(root),
            "no NHANES files found",
            allowed="DEMO_J.csv (or .csv.gz) and the files listed in docs/screening.md",
        )
    return NhanesSource(root, dict(sorted(cycles.items())), drug_table)


def _number(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    number = float(value)
    # Some conversions of the SAS transport files write 0 as 5.4e-79.
    return 0.0 if abs(number) < 1e-30 else number


def _code(value: str | None) -> int | None:
    number = _number(value)
    return None if number is None else round(number)


def _rows_by_seqn(path: Path | None) -> dict[int, dict[str, str]]:
    if path is None:
        return {}
    with _open_csv(path) as handle:
        return {int(float(row["SEQN"])): row for row in csv.DictReader(handle)}


@dataclass
class Participant:
    """One SEQN with its rows from each file of its cycle (picklable, for workers)."""

    seqn: int
    cycle: str
    n_cycles: int
    alcohol: AlcoholSource
    demo: dict[str, str]
    biopro: dict[str, str] | None
    alq: dict[str, str] | None
    diet: dict[str, str] | None
    rx_answered: bool
    rx_use: int | None
    drugs: list[dict[str, str]] = field(default_factory=list)
    multum: dict[str, set[str]] = field(default_factory=dict)


def _multum_categories(path: Path | None) -> dict[str, set[str]]:
    """Multum generic drug id -> every category id of the drug and of its ingredients."""
    if path is None:
        return {}
    out: dict[str, set[str]] = {}
    with _open_csv(path) as handle:
        for row in csv.DictReader(handle):
            cats = {
                v.strip()
                for k, v in row.items()
                if k and k.startswith(("RXDDCI", "RXDICI")) and v and v.strip()
            }
            out[row["RXDDRGID"].strip()] = {c.split(".")[0] for c in cats}
    return out


def participants(source: NhanesSource, alcohol: AlcoholSource) -> Iterator[tuple[str, Participant]]:
    """Every participant of every cycle, as (patient id, record), sorted by patient id."""
    multum = _multum_categories(source.drug_table)
    records: list[tuple[str, Participant]] = []
    for suffix, files in source.cycles.items():
        demo = _rows_by_seqn(files["DEMO"])
        biopro = _rows_by_seqn(files.get("BIOPRO"))
        alq = _rows_by_seqn(files.get("ALQ"))
        diet = _rows_by_seqn(files.get("DR1TOT"))
        rx: dict[int, list[dict[str, str]]] = {}
        rx_path = files.get("RXQ_RX")
        if rx_path is not None:
            with _open_csv(rx_path) as handle:
                for row in csv.DictReader(handle):
                    rx.setdefault(int(float(row["SEQN"])), []).append(row)
        for seqn, row in demo.items():
            rx_rows = rx.get(seqn, [])
            use = _code(rx_rows[0].get("RXDUSE")) if rx_rows else None
            record = Participant(
                seqn=seqn,
                cycle=suffix,
                n_cycles=len(source.cycles),
                alcohol=alcohol,
                demo=row,
                biopro=biopro.get(seqn),
                alq=alq.get(seqn),
                diet=diet.get(seqn),
                rx_answered=rx_path is not None,
                rx_use=use,
                drugs=[r for r in rx_rows if (r.get("RXDDRUG") or "").strip()],
            )
            if multum:
                record.multum = {
                    d["RXDDRUG"]: multum.get((d.get("RXDDRGID") or "").strip(), set()) for d in record.drugs
                }
            records.append((str(seqn), record))
    records.sort(key=lambda item: item[0])
    yield from records


def _alcohol_drinks(p: Participant, kb: KnowledgeBase) -> tuple[float | None, str]:
    """Average drinks a day and where it came from, or ``None`` when unknown."""
    if p.alcohol == "recall":
        d = p.diet or {}
        if _code(d.get("DR1DRSTZ")) != 1:
            return None, "no reliable day-1 recall (DR1DRSTZ)"
        grams = _number(d.get("DR1TALCO"))
        if grams is None:
            return None, "DR1TALCO missing"
        return grams / kb.param("alcohol.grams_per_drink"), f"DR1TALCO {grams:g} g"
    a = p.alq or {}
    never = _code(a.get("ALQ111")) == 2 or _code(a.get("ALQ110")) == 2
    if never:
        return 0.0, "never drank (ALQ111/ALQ110)"
    per_day = _number(a.get("ALQ130"))
    if "ALQ121" in a:
        freq = _code(a.get("ALQ121"))
        if freq == 0:
            return 0.0, "no drink in the past year (ALQ121 = 0)"
        days = _ALQ121_DAYS.get(freq) if freq is not None else None
    else:
        amount, unit = _number(a.get("ALQ120Q")), _code(a.get("ALQ120U"))
        if amount == 0:
            return 0.0, "no drink in the past year (ALQ120Q = 0)"
        per_year = _ALQ120U_PER_YEAR.get(unit) if unit is not None else None
        days = amount * per_year if amount is not None and amount < 777 and per_year else None
    if days is None or per_day is None or per_day >= 777:
        return None, "alcohol questionnaire not answered"
    return per_day * min(days, 365.0) / 365.0, f"ALQ130 {per_day:g} drinks x {days:g} days/365"


def _facts(p: Participant, job: Job, kb: KnowledgeBase) -> PatientFacts:
    demo = p.demo
    where = f"NHANES {CYCLES[p.cycle]} SEQN {p.seqn}"
    sex_code = _code(demo.get("RIAGENDR"))
    pregnancy = _code(demo.get("RIDEXPRG"))
    labs: list[Lab] = []
    creatinine = _number((p.biopro or {}).get("LBXSCR"))
    if creatinine is not None:
        labs.append(
            Lab(
                test="serum_creatinine",
                value=to_canonical(kb, "serum_creatinine", creatinine, "mg/dL"),
                unit=kb.tests["serum_creatinine"].canonical_unit,
                reported_value=creatinine,
                reported_unit="mg/dL",
                origin=Origin(f"{where} BIOPRO_{p.cycle}.LBXSCR", "field"),
            )
        )
    drinks, how = _alcohol_drinks(p, kb)
    if drinks is not None:
        labs.append(
            Lab(
                test="alcohol_drinks_per_day",
                value=drinks,
                unit=kb.tests["alcohol_drinks_per_day"].canonical_unit,
                origin=Origin(where, how),
            )
        )
    medications: tuple[Medication, ...] | None = None
    if p.rx_use == 2:
        medications = ()
    elif p.rx_use == 1:
        meds = []
        for row in p.drugs:
            name = row["RXDDRUG"].strip()
            if name in _UNKNOWN_DRUG:
                name = f"unknown prescription drug (RXDDRUG {name})"
                found_ids: tuple[str, ...] = ()
                matched_by = None
            else:
                found = match_drug(kb, (), name)
                found_ids, matched_by = found.ids, found.matched_by
            days = _code(row.get("RXDDAYS"))
            start = job.as_of - dt.timedelta(days=days) if days is not None and 0 <= days < 77777 else None
            meds.append(
                Medication(
                    text=name,
                    drugs=found_ids,
                    current=True,
                    start=start,
                    origin=Origin(f"{where} RXQ_RX_{p.cycle}", matched_by),
                )
            )
        medications = tuple(meds)
    diet_mg = None
    if _code((p.diet or {}).get("DR1DRSTZ")) == 1:
        diet_mg = _number((p.diet or {}).get("DR1TMAGN"))
    return PatientFacts(
        as_of=job.as_of,
        patient_id=str(p.seqn),
        age_years=_number(demo.get("RIDAGEYR")),
        sex="male" if sex_code == 1 else "female" if sex_code == 2 else None,
        pregnant=True if pregnancy == 1 else False if pregnancy == 2 else None,
        medications=medications,
        labs=tuple(labs),
        diet_mg_per_day=diet_mg,
    )


def _cohort(p: Participant, row: dict[str, Any]) -> tuple[bool, str | None, float | None]:
    age = _number(p.demo.get("RIDAGEYR"))
    weight_name = "WTDRD1" if p.alcohol == "recall" else "WTMEC2YR"
    weights = p.diet if p.alcohol == "recall" else p.demo
    weight = _number((weights or {}).get(weight_name))
    if age is None or age < COHORT_MIN_AGE:
        return False, f"age under {COHORT_MIN_AGE}", None
    if _code(p.demo.get("RIDEXPRG")) == 1:
        return False, "pregnant", None
    if not row["mds_complete"]:
        unknown = [c for c in ("diuretic", "ppi", "kidney", "alcohol") if row[f"mds_{c}"] is None]
        return False, "MDS incomplete: " + ", ".join(unknown) + " unknown", None
    if not weight:
        return False, f"no {weight_name} weight", None
    return True, None, weight / p.n_cycles


def assess_participant(p: Participant, job: Job, kb: KnowledgeBase) -> PatientResult:
    """Assess one NHANES participant and mark whether they are in the study cohort."""
    facts = _facts(p, job, kb)
    result = assess_facts(facts, kb, job)
    row = result.row
    assert row is not None
    in_cohort, exclusion, weight = _cohort(p, row)
    multum_cats = set().union(*p.multum.values()) if p.multum else set()
    known = p.rx_use == 2 or (p.rx_use == 1 and bool(p.multum))
    row.update(
        cycle=CYCLES[p.cycle],
        in_cohort=in_cohort,
        cohort_exclusion=exclusion,
        survey_weight=weight,
        sdmvpsu=_code(p.demo.get("SDMVPSU")),
        sdmvstra=_code(p.demo.get("SDMVSTRA")),
        diuretic_multum=bool(multum_cats & _MULTUM_DIURETIC) if known else None,
        ppi_multum=bool(multum_cats & _MULTUM_PPI) if known else None,
    )
    return result
