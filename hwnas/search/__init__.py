"""Latency-constrained architecture search (not yet implemented: see the project's issues)."""

__all__: list[str] = []
