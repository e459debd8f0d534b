"""Curriculum datasets (seed 000): a dataset folder owns its stages, fixed validation pools
and pre-generated training samples. stream.py documents the sample stream and its files."""
