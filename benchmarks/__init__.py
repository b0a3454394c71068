"""Benchmark scripts: each prints a table and writes JSON; never imported by the package."""
