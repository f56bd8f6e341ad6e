"""Benchmarks, run with ``make bench``; each module is a script with its own ``main``."""
