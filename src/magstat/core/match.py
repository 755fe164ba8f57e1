"""Recognising drugs, conditions, signs, tests and supplements by code or by name.

One implementation for every adapter: the FHIR reader, the patient document, the batch
engines and the service all call these functions, so a code or a name is recognised the same
way everywhere. Codes are tried first; names are matched as whole words in the text, and the
result says which matched. A sign or condition named in text carries its context (negated,
historical, hypothetical, family; :mod:`magstat.core.context`), and a lifelong diagnosis named
after a sign (epilepsy for seizure) the context ``chronic``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from magstat.core.context import context_of
from magstat.kb.cache import per_kb
from magstat.kb.schema import KnowledgeBase

__all__ = [
    "ATC",
    "ICD10",
    "LOINC",
    "RXNORM",
    "SNOMED",
    "Match",
    "canonical_system",
    "describes_absence",
    "describes_past",
    "find_signs",
    "gives_parenteral_route",
    "match_condition",
    "match_drug",
    "match_sign",
    "match_supplement",
    "match_test",
]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
ATC = "http://www.whocc.no/atc"

_SYSTEM_ALIASES = {
    "rxnorm": RXNORM,
    "snomed": SNOMED,
    "sct": SNOMED,
    "loinc": LOINC,
    "icd10": ICD10,
    "icd-10-cm": ICD10,
    "icd10cm": ICD10,
    "http://hl7.org/fhir/sid/icd-10": ICD10,
    "atc": ATC,
}


@dataclass(frozen=True, slots=True)
class Match:
    """What was recognised (knowledge-base ids) and how (``RxNorm 7646``, ``text "..."``).

    ``context`` is where the text puts it (:mod:`magstat.core.context`): ``current``,
    ``negated``, ``historical``, ``hypothetical``, ``family``, or ``chronic`` (a lifelong
    diagnosis named after a sign); ``trigger`` is the phrase that set it. A match by code is
    ``current``: the resource's own statuses say the rest.
    """

    ids: tuple[str, ...]
    matched_by: str | None
    context: str = "current"
    trigger: str | None = None

    def __bool__(self) -> bool:
        return bool(self.ids)


_NO_MATCH = Match((), None)


def canonical_system(system: str | None) -> str | None:
    """Map short system names (``rxnorm``, ``snomed``, ``icd10``) to their FHIR URIs."""
    if system is None:
        return None
    return _SYSTEM_ALIASES.get(system.strip().lower(), system.strip())


@dataclass(frozen=True, slots=True)
class _Index:
    codes: Mapping[tuple[str, str], tuple[str, ...]]
    icd10: tuple[tuple[str, str], ...]  # (prefix without dot, id), longest first
    pattern: re.Pattern[str] | None
    names: Mapping[str, tuple[str, ...]]
    chronic: _Index | None = None


def _text_index(
    named: Iterable[tuple[str, Iterable[str]]],
) -> tuple[re.Pattern[str] | None, dict[str, tuple[str, ...]]]:
    names: dict[str, list[str]] = {}
    for entry_id, spellings in named:
        for spelling in spellings:
            key = _fold(spelling)
            if key and entry_id not in names.setdefault(key, []):
                names[key].append(entry_id)
    if not names:
        return None, {}
    # Longest first, so that "magnesium oxide" wins over "magnesium".
    alternatives = sorted(names, key=len, reverse=True)
    body = "|".join(r"[\s\-]+".join(re.escape(part) for part in n.split(" ")) for n in alternatives)
    pattern = re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")
    return pattern, {k: tuple(v) for k, v in names.items()}


def _fold(text: str) -> str:
    """Lower-case and treat runs of spaces and hyphens alike ("AUDIT-C" == "audit c")."""
    return " ".join(part for part in re.split(r"[\s\-]+", text.lower()) if part)


@per_kb
def _chronic_index(kb: KnowledgeBase) -> _Index:
    """Codes and names of lifelong diagnoses named after a sign (epilepsy for seizure)."""
    codes: dict[tuple[str, str], tuple[str, ...]] = {}
    icd: list[tuple[str, str]] = []
    named: list[tuple[str, Iterable[str]]] = []
    for sign in kb.signs.values():
        for code in sign.chronic_snomed:
            codes[(SNOMED, code)] = (*codes.get((SNOMED, code), ()), sign.id)
        icd.extend((c.replace(".", "").upper(), sign.id) for c in sign.chronic_icd10)
        if sign.chronic_names:
            named.append((sign.id, sign.chronic_names))
    pattern, names = _text_index(named)
    icd.sort(key=lambda item: len(item[0]), reverse=True)
    return _Index(codes, tuple(icd), pattern, names)


@per_kb
def _index(kb: KnowledgeBase, kind: str) -> _Index:
    """The code and name index of one kind of entry (built once per knowledge base)."""
    codes: dict[tuple[str, str], list[str]] = {}
    icd: list[tuple[str, str]] = []
    named: list[tuple[str, Iterable[str]]] = []

    def add(system: str, code: str, entry_id: str) -> None:
        ids = codes.setdefault((system, code.strip()), [])
        if entry_id not in ids:
            ids.append(entry_id)

    if kind == "drug":
        for drug in kb.drugs.values():
            for code in drug.rxnorm:
                add(RXNORM, code, drug.id)
            for code in drug.atc:
                add(ATC, code, drug.id)
            named.append((drug.id, (drug.name, *drug.synonyms)))
    elif kind in ("condition", "sign"):
        table = kb.conditions if kind == "condition" else kb.signs
        for entry in table.values():
            for code in entry.snomed:
                add(SNOMED, code, entry.id)
            icd.extend((c.replace(".", "").upper(), entry.id) for c in entry.icd10)
            named.append((entry.id, (entry.name, *entry.synonyms)))
    elif kind == "test":
        for test in kb.tests.values():
            for loinc in test.loinc:
                add(LOINC, loinc.code, test.id)
            named.append((test.id, test.text_patterns))
    elif kind == "supplement":
        for supplement in kb.supplements.values():
            named.append((supplement.id, (supplement.name, *supplement.synonyms)))
    pattern, names = _text_index(named)
    icd.sort(key=lambda item: len(item[0]), reverse=True)
    chronic = _chronic_index(kb) if kind == "sign" else None
    return _Index({k: tuple(v) for k, v in codes.items()}, tuple(icd), pattern, names, chronic)


def _hits(index: _Index, text: str | None) -> tuple[str, list[tuple[str, str, int, int]]]:
    """The folded text, and each (entry id, spelling, start, end) found in it, in order."""
    if not text or index.pattern is None:
        return "", []
    lowered = " ".join(text.lower().split())
    found: list[tuple[str, str, int, int]] = []
    seen: set[str] = set()
    for hit in index.pattern.finditer(lowered):
        key = _fold(hit.group(0))
        for entry_id in index.names.get(key, ()):
            if entry_id not in seen:
                seen.add(entry_id)
                found.append((entry_id, hit.group(0), hit.start(), hit.end()))
    return lowered, found


def _by_text(index: _Index, text: str | None, *, every: bool) -> Match:
    _lowered, found = _hits(index, text)
    if not found:
        return _NO_MATCH
    return _text_match(found if every else found[:1])


def _text_match(
    found: list[tuple[str, str, int, int]], context: str = "current", trigger: str | None = None
) -> Match:
    """The match of the entries found in a text (see :func:`_hits`), in their order."""
    return Match(
        tuple(f[0] for f in found), "text " + ", ".join(f'"{f[1]}"' for f in found), context, trigger
    )


def _in_context(kb: KnowledgeBase, index: _Index, text: str | None) -> list[Match]:
    """One match per entry found in the text, each with its ConText context."""
    lowered, found = _hits(index, text)
    if not found:
        return []
    contexts = context_of(kb, lowered, [(a, b) for _, _, a, b in found])
    return [
        Match((entry_id,), f'text "{spelled}"', ctx.context, ctx.trigger)
        for (entry_id, spelled, _a, _b), ctx in zip(found, contexts, strict=True)
    ]


def _by_code(index: _Index, codes: Iterable[tuple[str | None, str | None]]) -> Match:
    found: list[str] = []
    how: list[str] = []
    for system, code in codes:
        if not code:
            continue
        uri = canonical_system(system)
        if uri is None:
            continue
        if uri == ICD10:
            norm = code.replace(".", "").upper().strip()
            for prefix, entry_id in index.icd10:
                if norm.startswith(prefix) and entry_id not in found:
                    found.append(entry_id)
                    how.append(f"ICD-10-CM {code}")
                    break
            continue
        for entry_id in index.codes.get((uri, code.strip()), ()):
            if entry_id not in found:
                found.append(entry_id)
                how.append(f"{_system_label(uri)} {code}")
    return Match(tuple(found), ", ".join(how)) if found else _NO_MATCH


def _system_label(uri: str) -> str:
    return {RXNORM: "RxNorm", SNOMED: "SNOMED CT", LOINC: "LOINC", ATC: "ATC", ICD10: "ICD-10-CM"}.get(
        uri, uri
    )


def describes_past(text: str | None) -> bool:
    """Whether a problem-list text describes the past ("History of seizure", "Past ... history").

    Name matching finds "pregnancy" in "Past pregnancy history of miscarriage" and "seizure"
    in "History of single seizure"; an entry recognised by name only in such a text says the
    condition was there once, not that it is now. Adapters keep it as not current.
    """
    return bool(text) and "history" in (text or "").lower()


# A parenteral route or dose form named in a product's own name, as prescriptions and RxNorm
# names write it ("magnesium sulfate 500 MG/ML Injectable Solution", "MgSO4 4 g IV").
_PARENTERAL_WORDS = re.compile(
    r"(?<![a-z])(?:iv|i\.v\.|im|i\.m\.|ivpb|intravenous(?:ly)?|intramuscular(?:ly)?|infusion|injection|injectable|"
    r"inj|bolus|premix(?:ed)?|piggyback)(?![a-z])"
)


def gives_parenteral_route(text: str | None) -> bool:
    """Whether a medication's name gives a parenteral route or dose form ("50% IV", "Injectable Solution").

    Used where no route is recorded: the core reads such a magnesium product as treatment, and
    the adapters never count it as a supplement taken by mouth.
    """
    return bool(text) and _PARENTERAL_WORDS.search((text or "").lower()) is not None


_ABSENCE = re.compile(
    r"^\s*(?:no|not|denies|denied|without|negative for|absence of|absent|ruled out|r/o|no evidence of)\b",
    re.IGNORECASE,
)


def describes_absence(text: str | None) -> bool:
    """Whether a free text reports something absent ("No seizures", "Denies tetany").

    Name matching finds "seizure" in "No seizures"; such a text, recognised by name only,
    reports the sign absent. Only a negation at the start of the text is read: free text with a
    negation further in is left to the person reviewing the unrecognised entries.
    """
    return bool(text) and _ABSENCE.match(text or "") is not None


def match_drug(
    kb: KnowledgeBase, codes: Iterable[tuple[str | None, str | None]] = (), text: str | None = None
) -> Match:
    """Recognise the drug ingredients of a medication by RxNorm/ATC code, else by name.

    A combination product named in text ("lisinopril / hydrochlorothiazide") yields each
    ingredient the knowledge base knows. The text's ConText context comes with the match
    ("omeprazole, discontinued" is historical; see :func:`_drugs_in_context`).

    .. versionchanged:: 0.6.0 the match carries the context of the drugs named in the text.
    """
    index = _index(kb, "drug")
    by_code = _by_code(index, codes)
    by_text = _drugs_in_context(kb, index, text)
    if by_code and by_text:
        # The text of a product code names all its ingredients; keep both, code first.
        ids = by_code.ids + tuple(i for i in by_text.ids if i not in by_code.ids)
        return Match(
            ids,
            by_code.matched_by if ids == by_code.ids else f"{by_code.matched_by}; {by_text.matched_by}",
            by_text.context,
            by_text.trigger,
        )
    return by_code or by_text


def _drugs_in_context(kb: KnowledgeBase, index: _Index, text: str | None) -> Match:
    """Every drug named in the text; the match's context is where the text puts them.

    "Omeprazole, discontinued" or "previously on furosemide" names a drug the patient no longer
    takes: when every drug named is out of the current context, the match carries the first
    one's context and trigger (the adapters then read the medication as not current). When
    any is current ("stopped omeprazole, started pantoprazole"), the entry is current.
    """
    lowered, found = _hits(index, text)
    if not found:
        return _NO_MATCH
    contexts = context_of(kb, lowered, [(a, b) for _, _, a, b in found])
    if any(c.context == "current" for c in contexts):
        return _text_match(found)
    return _text_match(found, contexts[0].context, contexts[0].trigger)


def match_condition(
    kb: KnowledgeBase, codes: Iterable[tuple[str | None, str | None]] = (), text: str | None = None
) -> Match:
    """Recognise a condition by SNOMED CT or ICD-10-CM code, else by name in the text.

    A name found in the text carries its context ("history of", "no", "mother has" ...; see
    :mod:`magstat.core.context`). A lasting condition (an operation or an inherited
    tubulopathy, ``Condition.lasting``) named in the past is current: "status post gastric
    bypass" names a bypass that is still there.

    .. versionchanged:: 0.7.0 a lasting condition named in the past is current.
    """
    index = _index(kb, "condition")
    by_code = _by_code(index, codes)
    if by_code:
        return by_code
    found = _in_context(kb, index, text)
    if not found:
        return _NO_MATCH
    first = found[0]
    if first.context == "historical" and all(kb.conditions[i].lasting for i in first.ids):
        # "Status post gastric bypass": the operation is past, the bypass is not. The trigger
        # stays, so that the reading can be shown.
        return Match(first.ids, first.matched_by, "current", first.trigger)
    return first


def _chronic(kb: KnowledgeBase, codes: Iterable[tuple[str | None, str | None]], text: str | None) -> Match:
    chronic = _index(kb, "sign").chronic
    assert chronic is not None
    found = _by_code(chronic, codes) or _by_text(chronic, text, every=True)
    if not found:
        return _NO_MATCH
    return Match(found.ids, found.matched_by, "chronic", found.matched_by)


def find_signs(
    kb: KnowledgeBase, codes: Iterable[tuple[str | None, str | None]] = (), text: str | None = None
) -> tuple[Match, ...]:
    """Every sign named by the codes or the text, each with its context.

    A code or name of a lifelong diagnosis named after a sign (epilepsy, "seizure disorder")
    gives that sign with the context ``chronic``. Otherwise codes are tried first; failing
    them, each sign named in the text is returned with its ConText context, so that "Patient
    denies tetany, seizures or muscle cramps" gives all three as ``negated``.

    .. versionadded:: 0.2.0
    """
    codes = tuple(codes)
    chronic = _chronic(kb, codes, text)
    lifelong = tuple(Match((i,), chronic.matched_by, "chronic", chronic.trigger) for i in chronic.ids)
    index = _index(kb, "sign")
    by_code = _by_code(index, codes)
    if by_code:
        return lifelong + tuple(Match((i,), by_code.matched_by) for i in by_code.ids if i not in chronic.ids)
    return lifelong + tuple(m for m in _in_context(kb, index, text) if m.ids[0] not in chronic.ids)


def match_sign(
    kb: KnowledgeBase, codes: Iterable[tuple[str | None, str | None]] = (), text: str | None = None
) -> Match:
    """Recognise a sign or symptom by SNOMED CT or ICD-10-CM code, else by name in the text.

    The first of :func:`find_signs`; its ``context`` says whether the text reports it present
    now (``current``) or not.
    """
    found = find_signs(kb, codes, text)
    if not found:
        return _NO_MATCH
    first = found[0]
    if first.context == "chronic" or not (first.matched_by or "").startswith("text"):
        ids = tuple(dict.fromkeys(i for m in found for i in m.ids))
        return Match(ids, first.matched_by, first.context, first.trigger)
    return first


def match_test(
    kb: KnowledgeBase, codes: Iterable[tuple[str | None, str | None]] = (), text: str | None = None
) -> Match:
    """Recognise a lab test by LOINC code, else by the test's text patterns."""
    index = _index(kb, "test")
    return _by_code(index, codes) or _by_text(index, text, every=False)


def match_supplement(kb: KnowledgeBase, text: str | None) -> Match:
    """Recognise a magnesium salt or product form by name ("magnesium citrate", "Epsom salt")."""
    return _by_text(_index(kb, "supplement"), text, every=False)
