"""Benchmarks and experiments (outside the wheel): ``python -m benchmarks.<name>``; public API only."""
