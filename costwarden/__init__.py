"""costwarden: cost governance and budgeting for AI workloads."""
__version__ = "0.1.0"
