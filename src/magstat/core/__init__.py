"""The pure core: typed facts in, an explained assessment out (standard library only).

.. versionadded:: 0.1.0
"""

from magstat.core.assess import assess
from magstat.core.facts import (
    ConditionFact,
    FoodServing,
    Lab,
    Medication,
    Origin,
    PatientFacts,
    SignFact,
    SupplementFact,
)
from magstat.core.result import STATUSES, Assessment, Finding

__all__ = [
    "STATUSES",
    "Assessment",
    "ConditionFact",
    "Finding",
    "FoodServing",
    "Lab",
    "Medication",
    "Origin",
    "PatientFacts",
    "SignFact",
    "SupplementFact",
    "assess",
]
