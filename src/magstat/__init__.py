"""magstat: explained, cited assessment of a person's magnesium status.

Decision support, not diagnosis: every finding shows the inputs it used, the rule and the
cited sources, so that a clinician can check it.

Example::

    import datetime, magstat
    kb = magstat.load_kb()
    facts = magstat.PatientFacts(as_of=datetime.date(2024, 5, 1), age_years=67, sex="female")
    print(magstat.assess(facts, kb).status)

.. versionadded:: 0.1.0
"""

from magstat.core import (
    STATUSES,
    Assessment,
    ConditionFact,
    Finding,
    FoodServing,
    Lab,
    Medication,
    Origin,
    PatientFacts,
    SignFact,
    SupplementFact,
    assess,
)
from magstat.errors import InvalidInputError, KnowledgeBaseError, MagstatError
from magstat.kb import load as load_kb

__version__ = "0.9.0"
"""The package version: pyproject.toml reads it from here (hatch dynamic version)."""

__all__ = [
    "STATUSES",
    "Assessment",
    "ConditionFact",
    "Finding",
    "FoodServing",
    "InvalidInputError",
    "KnowledgeBaseError",
    "Lab",
    "MagstatError",
    "Medication",
    "Origin",
    "PatientFacts",
    "SignFact",
    "SupplementFact",
    "__version__",
    "assess",
    "load_kb",
]
