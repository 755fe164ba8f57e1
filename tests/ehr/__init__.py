"""The test EHR (FHIR server and SMART authorization server) and the SMART app tests."""
