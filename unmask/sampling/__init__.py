"""Samplers: every one yields a stream of StepEvents; the CLI and UIs only consume that stream.

`registry.pick_sampler(name, checkpoint)` builds one; `base` holds the request, the event and
the shared checks; `draw` the token draws; `unmasking` the ordered policies (confidence,
margin, entropy, random, threshold, random-threshold) with semi-AR blocks and MDLM's cache;
`remdm` ReMDM remasking; `remask` [WRONG]-based remasking; `causal` left to right; `infill` the
"[MASK:n]" syntax; `batch` many prompts with per-sample metadata.
"""
