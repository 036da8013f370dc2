"""recon: reconcile student-aid rosters with the dibao (低保) and filing-card (建档立卡) systems."""

__all__ = ["__version__"]
__version__ = "0.1.0"
