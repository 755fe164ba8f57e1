"""Input readers of the batch screening: FHIR Bulk Data, NHANES and tables.

.. versionadded:: 0.1.0
"""
