"""Benchmarks of sentry-memwatch against superlance's memmon, the raw /proc floor and supervisord.

Run with `python -m bench` (full run) or `python -m bench --quick`; the figures go to
bench/results/ as JSON, and bench/RESULTS.md says what they mean. Every figure comes from real
processes under a real supervisord started in a temp dir.
"""
