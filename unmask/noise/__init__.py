"""The forward (noising) processes: pure functions of clean ids and an explicit generator."""
