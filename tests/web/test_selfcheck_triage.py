"""Self-check triage: ordinary cramps are not an emergency; carpopedal spasm and the like are.

"Contact a clinician today" is kept for signs that the knowledge base marks as urgent, each
cited to a source that says they call for prompt treatment; the lay wording tells tetany
(carpopedal spasm) apart from an everyday cramp in the calf or foot.
"""

from __future__ import annotations

import pytest

from magstat.web import selfcheck

# Sources that support same-day care: symptomatic hypomagnesaemia (tetany, seizures,
# arrhythmia) calls for IV treatment [S54]; torsades de pointes is treated as an emergency [S61].
URGENCY_SOURCES = {"S54", "S61"}


def _urgency(client, answers: dict[str, str]) -> str:
    html = client.post("/self-check", data=answers).text
    return next(u for u in ("today", "soon", "next_visit", "none") if f"urgency u-{u}" in html)


@pytest.mark.parametrize(
    "answers",
    [
        {"sign-muscle_cramps": "1"},
        {"age": "70", "sex": "female", "sign-muscle_cramps": "1", "sign-fatigue": "1"},
        {"med-0-name": "furosemide", "sign-muscle_cramps": "1"},
        {"med-0-name": "omeprazole", "sign-muscle_cramps": "1", "sign-tremor": "1"},
    ],
)
def test_ordinary_foot_cramps_are_not_urgent(client, answers):
    """Ordinary cramps, even with a magnesium-lowering drug, never ask for a clinician today."""
    assert "today" != _urgency(client, answers)


@pytest.mark.parametrize("sign", ["tetany", "seizure", "arrhythmia"])
def test_carpopedal_spasm_and_other_urgent_signs_are_urgent(client, sign):
    """A sign the knowledge base marks urgent (carpopedal spasm, a fit) asks for a clinician today."""
    assert "today" == _urgency(client, {f"sign-{sign}": "1"})
    assert "today" == _urgency(client, {"age": "30", "sex": "male", f"sign-{sign}": "1", "meds_none": "1"})


def test_the_urgent_advice_names_the_sign_behind_it(client, kb):
    """ "Contact a clinician today" says which ticked sign it is for."""
    html = client.post("/self-check", data={"sign-tetany": "1", "sign-muscle_cramps": "1"}).text
    because = html.split("Because you ticked:", 1)[1].split("</p>", 1)[0]
    assert kb.signs["tetany"].plain_name.split(" (")[0] in because
    assert "Ordinary muscle cramps" not in because


def test_lay_wording_separates_cramps_from_carpopedal_spasm(kb):
    """The two lay labels differ and each says what sets it apart from the other."""
    tetany, cramps = kb.signs["tetany"].plain_name.lower(), kb.signs["muscle_cramps"].plain_name.lower()
    assert "not an ordinary cramp" in tetany
    assert "ordinary" in cramps and "stretch" in cramps
    assert "cramp" not in tetany.replace("not an ordinary cramp", "")


def test_every_urgent_sign_is_cited_for_its_urgency(kb):
    """Each sign marked urgent cites a source that supports same-day care; cramps are not urgent."""
    urgent = {s.id: s for s in kb.signs.values() if s.urgent}
    assert {"tetany", "seizure", "arrhythmia", "torsades_de_pointes"} <= set(urgent)
    for sign in urgent.values():
        assert URGENCY_SOURCES & set(sign.sources), sign.id
    assert not kb.signs["muscle_cramps"].urgent


def test_urgent_signs_names_only_the_marked_signs(kb, client):
    """The self-check names the urgent signs it found and nothing else."""
    from magstat.adapters.read import facts_from_data  # noqa: PLC0415
    from magstat.core.assess import assess  # noqa: PLC0415

    doc = {"as_of": "2024-05-01", "signs": {"tetany": True, "muscle_cramps": True, "fatigue": True}}
    result = assess(facts_from_data(doc, kb, as_of=None), kb)
    assert ("tetany",) == selfcheck.urgent_signs(result, kb)


def test_the_appointment_advice_does_not_presume_more_magnesium(client):
    """Kidney disease with a magnesium laxative: the advice to book a test does not say more magnesium is needed."""
    html = client.post(
        "/self-check",
        data={"age": "70", "cond-chronic_kidney_disease": "1", "med-0-name": "milk of magnesia"},
    ).text
    assert "urgency u-soon" in html
    assert "too low or too high" in html
    assert "more is needed" not in html
