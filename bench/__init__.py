"""Benchmarks of sentry-memwatch against superlance's memmon and the raw /proc floor.

Run with `python -m bench` (full run, writes bench/RESULTS.md) or `python -m bench --quick`.
Every figure comes from real processes under a real supervisord started in a temp dir.
"""
