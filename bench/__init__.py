"""Benchmarks of taskgate against raw arq; run them with ``python -m bench``."""
