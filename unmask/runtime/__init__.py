"""Device, precision, randomness and process-rank plumbing shared by every stage."""
