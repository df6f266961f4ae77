"""Erasure as an operated service: a request ledger, a registry of model versions, a hash chain of
receipts, instant masking, a queue worker and an HTTP API (issue 14)."""
