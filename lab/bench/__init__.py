"""Benchmarks: each prints one JSON document on stdout (``kemu bench ...``)."""
