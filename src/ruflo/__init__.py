"""ruflo: a swarm orchestrator for LLM agents, with a company mode beside it.

Kept import-light: `ruflo --help` must start fast, so nothing heavy is imported here.
"""

__version__ = "0.1.0"
