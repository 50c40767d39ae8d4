"""Ingest: events, secret redaction, chunking, the stored transcript."""
