"""Compact, deterministic text for LLM readers. Formatting only: no statistics, no I/O."""
