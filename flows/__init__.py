import reconcile  # noqa: F401  (first: it sets polars' allocator options before polars loads)
