"""Samplers: every one yields a stream of StepEvents; the CLI and UIs only consume that stream.

`registry.pick_sampler(name, checkpoint)` builds one; `base` holds the request, the event and
the shared checks; `draw` the token draws.
"""
