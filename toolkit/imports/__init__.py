"""Imports of a platform's CSV exports into mlkit's own tables (`mlkit ingest orders|...`)."""
