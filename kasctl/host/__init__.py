"""Facts about this host and its engines, gathered once per run (and the cache they use)."""
