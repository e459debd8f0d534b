"""Samplers: every one yields a stream of steps; the CLI and UIs only consume that stream."""
