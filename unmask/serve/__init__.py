"""Live interfaces: a web page (FastAPI + Server-Sent Events) and a `rich` terminal view.

Stream in, pixels out: both only consume a sampler's `StepEvent` stream; no model logic here.

- `settings.py`  what a user may ask for (`Settings`, `Limits`) -> a sampler and a request,
                 exactly as `unmask sample` builds them (so the texts are equal);
- `stream.py`    StepEvents -> per-position cell states and JSON-able frames;
- `session.py`   generation slots: a bounded number of generations, each in a worker thread,
                 cancelled on request, on a stalled client or past a time limit;
- `info.py`      the model panel (parameters, vocabulary, device, memory, step, checkpoints);
- `app.py`       the FastAPI app factory (imports fastapi: the `serve` extra);
- `tui.py`, `tui_loop.py`  the rich live view, the interactive loop and the batch mode.
"""
