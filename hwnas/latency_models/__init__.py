"""Latency predictors trained from device profiles (not yet implemented: see the project's issues)."""

__all__: list[str] = []
