"""Spark plumbing of the Glue jobs. Everything about FHIR, pseudonyms, the lake and the ledger is
the Rust core, loaded as the `metriccare` module (functions/python); this package only hands its
tasks to Spark executors and says what happened."""
