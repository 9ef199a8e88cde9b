"""Paper 2, SOFT + TSFA [kim2025soft]: per-round sparsification and bandwidth, deadline search, offline rank, planner."""
