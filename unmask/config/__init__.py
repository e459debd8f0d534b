"""Run configuration: per-component dataclasses, presets, file and override reading,
and the seed-compatible flat names."""
