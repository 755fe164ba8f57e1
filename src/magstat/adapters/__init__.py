"""Adapters that translate outside inputs (FHIR R4) into the core's typed facts."""
