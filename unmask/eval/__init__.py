"""Numbers about a model: likelihoods by objective, sample metrics, repair scores."""
