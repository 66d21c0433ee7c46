"""Benchmarks of redundancy against the reference implementation (run as ``python -m benchmarks.<name>``)."""
