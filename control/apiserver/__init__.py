"""The apiserver: the one process every other component talks to (hub and spoke)."""
