"""Objectives: what a clean batch becomes, which loss scores it, how it is validated."""
