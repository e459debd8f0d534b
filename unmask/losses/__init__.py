"""Losses: pure functions of logits and targets, shared by objectives (training) and eval."""
