"""aidp, the AI Development Pipeline: workstreams run as checkpointed, resumable pipelines."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
