"""Fault injection: `make chaos` (python -m chaos). See docs/reliability.md."""
