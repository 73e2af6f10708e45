"""The lab: spawning, supervision, chaos, logs, reports and benchmarks.

Layering contract: ``lab`` may import ``emulator``, ``control`` and ``node``.
"""
