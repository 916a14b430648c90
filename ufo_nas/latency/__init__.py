"""Latency: inference backends, operator profiling, lookup tables and their predictor."""
