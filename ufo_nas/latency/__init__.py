"""Latency: operator profiling, lookup tables and their predictor."""
