"""recon: reconcile student-aid rosters with the dibao (低保) and filing-card (建档立卡) systems."""

import os as _os

# polars' allocator (jemalloc) keeps freed pages for 10 s by default, and a county-wide run
# frees gigabytes from one step to the next: without this its resident memory is the sum of
# several steps' peaks. Read once, when polars loads, so this package is imported first by
# every entry point (cli, flows, benchmarks); a value set by the user wins.
_os.environ.setdefault("_RJEM_MALLOC_CONF", "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0")

__all__ = ["__version__"]
__version__ = "0.1.0"
