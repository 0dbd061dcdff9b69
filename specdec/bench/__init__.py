"""Benchmark machinery shared by `specdec bench` and the scripts in benchmarks/."""
