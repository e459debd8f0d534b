"""Training: the loop, optimizer, metrics, checkpoint writing and transfer learning."""
