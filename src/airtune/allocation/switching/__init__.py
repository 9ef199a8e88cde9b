"""Paper 3, model switching [wang2025switching]: module assignment (dual ascent, greedy, one-shot), two-tier
bandwidth, power control, risk bound, planner."""
