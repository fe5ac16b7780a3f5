"""Helpers for tests, benchmarks and the demo: start real services on loopback, stop them by pid."""
