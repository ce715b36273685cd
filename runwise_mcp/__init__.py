"""runwise-mcp: read ML training runs on disk (W&B transaction logs and more) for AI assistants."""

__version__ = "0.1.0"
