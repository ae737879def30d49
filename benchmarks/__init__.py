"""Benchmarks (nox -s bench): speed is measured here, never asserted in tests."""
