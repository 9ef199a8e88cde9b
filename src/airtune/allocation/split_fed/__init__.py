"""Paper 1, split federated LoRA [wang2025sfl]: Lyapunov energy queues, water-filling, online scheduling, planner."""
