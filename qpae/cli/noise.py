"""Quiet the messages a qpae run cannot act on, and keep every real warning.

Lightning's advertising tip (litlogger), and a deprecation that Lightning's own code triggers
under torch 2.11 (``isinstance(treespec, LeafSpec)``), say nothing about the user's run; they are
filtered by their exact text, so that any other warning still shows.
"""

from __future__ import annotations

import logging
import warnings


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in record.getMessage()


def quiet_known_noise() -> None:
    """Install the filters (idempotent)."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
