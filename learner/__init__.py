"""Training: pure RL math, the reward model, GRPO policy updates and the learner loop (no Ray here)."""
