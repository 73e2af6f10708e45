"""Kubernetes-shaped API objects: the kind registry, defaulting, validation,
selectors and patches. Pure functions over plain dicts; no I/O."""
