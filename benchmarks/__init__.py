"""Benchmarks for issue 4: the bot's own cost, measured against the end-to-end fakes.

Run `python -m benchmarks` (see benchmarks/README.md). Not tests: nothing here asserts on timing.
"""
