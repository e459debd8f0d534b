"""A single book prepared for the 3-stage curriculum (seed 004): pipeline, scoring, stages."""
