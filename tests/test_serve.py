"""The web server: its limits (413 / 422 / 429), cancellation on disconnect, the stalled-client
timeout, the loopback default, and streamed text equal to `unmask sample`'s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from tests.serve_support import XSS, LiveServer, cli_sample, tiny_run
from unmask.cli.main import build_parser
from unmask.errors import UserError
from unmask.model.pretrained import load_pretrained
from unmask.serve.app import STATIC, create_app
from unmask.serve.session import FrameChannel, Slots
from unmask.serve.settings import Limits, Settings, prepare


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def pre(run_dir):
    return load_pretrained(str(run_dir), "cpu")


@pytest.fixture
def client(pre):
    with TestClient(create_app(pre, Limits(max_length=48, max_steps=40, max_prompt_chars=30,
                                           max_body_bytes=2000)),
                    base_url="http://127.0.0.1") as c:
        yield c


def sse_frames(lines) -> list[dict]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def test_health_and_model_panel(client, pre):
    assert client.get("/health").json() == {"status": "ok", "active": 0, "capacity": 8}
    info = client.get("/api/model").json()
    assert info["parameters"] > 0 and info["vocab_size"] == pre.tokenizer.vocab_size and info["device"] == "cpu"
    assert info["training_step"] == 30 and info["memory"]["weights_bytes"] > 0
    assert {c["name"] for c in info["checkpoints"]} == {"best", "latest"}
    assert [c["name"] for c in info["checkpoints"] if c["loaded"]] == ["best"]
    assert {"confidence", "random"} <= set(info["samplers"]) and "causal" not in info["samplers"]


def test_page_is_self_contained_and_never_writes_html(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "://" not in text, f"{path.name} loads something from the network"
        assert client.get(f"/static/{path.name}").status_code == 200
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


@pytest.mark.parametrize("settings", [
    {"seed": 3, "prompt": "ROMEO:", "length": 30, "steps": 10},
    {"seed": 7, "policy": "random", "length": 40, "steps": 12, "top_k": 20, "top_p": 0.9},
    {"seed": 1, "temperature": 0.0, "length": 20, "steps": 20},
])
def test_streamed_text_equals_unmask_sample(client, run_dir, settings):
    response = client.post("/api/generate", json=settings)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(response.text.splitlines())
    start, steps, done = frames[0], frames[1:-1], frames[-1]
    assert start["type"] == "start" and done["type"] == "done"
    assert [f["step"] for f in steps] == list(range(1, len(steps) + 1))
    masked = [f["masked"] for f in steps]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0
    # the page's picture, rebuilt from the frames, is the final text
    cells = [text for text, _ in start["cells"]]
    for frame in steps:
        for pos, text, _ in frame["revealed"]:
            cells[pos] = text
    cli = cli_sample(run_dir, **settings)
    assert "".join(cells) == done["text"] == cli
    assert done["network_calls"] == len(steps) and done["tokens_per_second"] > 0


@pytest.mark.parametrize("body, message", [
    ({"prompt": "x" * 31}, "prompt has 31 characters; this server takes at most 30"),
    ({"length": 49}, "length must be between 1 and 48"),
    ({"steps": 41}, "steps must be between 1 and 40"),
    ({"steps": 0}, "steps must be between 1 and 40"),
    ({"length": "many"}, "length: Input should be a valid integer"),
    ({"temperature": -1}, "temperature must be between 0 and 100"),
    ({"top_p": 1.5}, "top_p must be between"),
    ({"seed": -1}, "seed must be between 0"),
    ({"speed": 0.01, "steps": 30, "length": 40}, "take longer than this server's limit"),
    ({"prompt": "ROMEO€"}, "not in the tokenizer's vocabulary"),
    ({"policy": "causal"}, "choose one of"),
    ({"policy": "nope"}, "unknown sampler 'nope'"),
    ({"prompt": "ROMEO:" * 5, "length": 40}, "exceeds the model's context 64"),
    ({"infill": "a [MASK:3] b"}, "infill: Extra inputs are not permitted"),
])
def test_bad_settings_are_422_with_a_message(client, body, message):
    response = client.post("/api/generate", json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_not_json_is_422(client):
    response = client.post("/api/generate", content=b"{nope",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]


def test_oversized_bodies_are_413(client):
    big = json.dumps({"prompt": "a" * 3000}).encode()
    assert client.post("/api/generate", content=big).status_code == 413  # Content-Length
    chunked = client.post("/api/generate", content=iter([big[:1500], big[1500:]]))
    assert chunked.status_code == 413 and "over 2,000 bytes" in chunked.json()["detail"]


def test_only_loopback_hosts_by_default(pre):
    assert build_parser().parse_args(["serve", "run"]).host == "127.0.0.1"
    with TestClient(create_app(pre), base_url="http://evil.example") as c:
        assert c.get("/health").status_code == 400  # a DNS-rebinding page gets nothing
    with TestClient(create_app(pre), base_url="http://localhost:8000") as c:
        assert c.get("/health").status_code == 200


def read_frames(lines, count: int) -> list[dict]:
    """The next `count` frames of an SSE line iterator (kept open: dropping a half-read
    httpx line iterator closes the response)."""
    frames = []
    while len(frames) < count:
        line = next(lines)
        if line.startswith("data: "):
            frames.append(json.loads(line[6:]))
    return frames


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


SLOW = {"length": 40, "steps": 40, "speed": 20}  # 2 s of animation


def test_busy_is_429_and_disconnect_cancels(pre):
    app = create_app(pre, Limits(max_concurrent=1))
    slots = app.state.slots
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("POST", "/api/generate", json=SLOW) as first:
            lines = first.iter_lines()
            assert [f["type"] for f in read_frames(lines, 3)] == ["start", "step", "step"]
            busy = http.post("/api/generate", json=SLOW)
            assert busy.status_code == 429 and "busy" in busy.json()["detail"]
            assert busy.headers["retry-after"] == "1"
            assert http.get("/health").json()["active"] == 1
            left = time.monotonic()
        # the client hung up after about 3 of 40 steps: the generation stops at once
        gen = wait_for(lambda: slots.recent and slots.recent[-1], timeout=2.0)
        assert time.monotonic() - left < 1.0
        assert gen.status == "cancelled" and "disconnected" in gen.reason
        assert gen.steps_run < 10, gen.summary()
        assert http.get("/health").json()["active"] == 0
        ok = http.post("/api/generate", json={"length": 10, "steps": 5})
        assert ok.status_code == 200 and sse_frames(ok.text.splitlines())[-1]["type"] == "done"


def test_health_answers_while_generations_stream(pre):
    app = create_app(pre)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        results = []

        def stream(seed):
            r = http.post("/api/generate", json={"seed": seed, "length": 60, "steps": 60})
            results.append(sse_frames(r.text.splitlines())[-1])

        threads = [threading.Thread(target=stream, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: http.get("/health").json()["active"] > 0, timeout=5)
        t0 = time.monotonic()
        assert http.get("/health").json()["status"] == "ok"
        assert time.monotonic() - t0 < 1.0
        for t in threads:
            t.join(30)
        assert [r["type"] for r in results] == ["done"] * 3


@contextlib.contextmanager
def event_loop_thread():
    """An asyncio loop running in a daemon thread, as the server's is; stopped afterwards."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)


def test_a_stalled_client_loses_its_slot(pre):
    """A client that takes no frame (here: nobody reads the channel) holds its slot only for
    `stall_seconds`: the worker gives up, the slot is free and the sampler stopped early."""
    limits = Limits(stall_seconds=0.3)
    slots = Slots(limits)
    with event_loop_thread() as loop:
        prepared = prepare(pre, Settings(length=60, steps=60), limits)
        channel = FrameChannel(loop, limits.stall_seconds, window=4)
        gen = slots.start(pre, prepared, prepared.events(pre.model), channel.put)
        assert gen.finished.wait(5)
        assert gen.status == "timeout" and "took no frame for 0.3 s" in gen.reason
        assert gen.steps_run <= 5 and not slots.active


def test_a_closed_response_frees_a_waiting_worker(pre):
    """The worker waits for a slow client (window full); the response ending (the client
    hung up) wakes it at once instead of after `stall_seconds`."""
    limits = Limits(stall_seconds=30)
    slots = Slots(limits)
    with event_loop_thread() as loop:
        prepared = prepare(pre, Settings(length=60, steps=60), limits)
        channel = FrameChannel(loop, limits.stall_seconds, window=2)
        gen = slots.start(pre, prepared, prepared.events(pre.model), channel.put)
        wait_for(lambda: channel.ahead == 2)
        time.sleep(0.1)
        assert not gen.finished.is_set() and gen.steps_run <= 3
        gen.cancel("the client disconnected")
        channel.close()
        assert gen.finished.wait(1.0)
        assert gen.status == "cancelled" and not slots.active


def test_cancel_wakes_a_paced_generation(pre):
    slots = Slots(Limits())
    prepared = prepare(pre, Settings(length=40, steps=40, speed=1), Limits(max_seconds=100))
    frames = []
    gen = slots.start(pre, prepared, prepared.events(pre.model),
                      lambda frame, last=False: frames.append(frame))
    time.sleep(0.2)
    gen.cancel("asked")
    assert gen.finished.wait(1.0)  # not after the 1 s step interval
    assert gen.status == "cancelled" and frames[-1]["type"] == "cancelled"


def test_prepare_matches_the_cli_defaults(pre):
    """No settings at all: the checkpoint's sample defaults, length fitted to the context."""
    p = prepare(pre, Settings())
    assert p.policy == "confidence" and p.request.length == 64 and p.request.steps == 16
    assert p.request.num_samples == 1 and p.prompt == ""
    with pytest.raises(UserError, match="length 64 is over this server's limit of 10"):
        prepare(pre, Settings(), Limits(max_length=10))


def test_xss_prompt_travels_as_plain_data(client):
    frames = sse_frames(client.post("/api/generate", json={
        "prompt": XSS, "length": 8, "steps": 4}).text.splitlines())
    assert "".join(text for text, kind in frames[0]["cells"] if kind == "fixed") == XSS
    assert frames[-1]["text"].startswith(XSS)


def test_unmask_serve_command(run_dir):
    """The real command: --port 0 picks a free loopback port and prints it; Ctrl-C stops it
    cleanly (exit 0)."""
    proc = subprocess.Popen([sys.executable, "-m", "unmask", "serve", str(run_dir), "--port",
                             "0", "--device", "cpu"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line + proc.stderr.read()
        assert httpx.get(url.group(0) + "health", timeout=10).json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert proc.stderr.read().strip() == "unmask serve: stopped"


def test_busy_port_is_a_clear_error(run_dir, capsys):
    from unmask.cli.main import main
    from unmask.cli.serve import bind

    taken = bind("127.0.0.1", 0)
    try:
        port = str(taken.getsockname()[1])
        assert main(["serve", str(run_dir), "--port", port]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    finally:
        taken.close()


def test_generations_run_in_the_precision_asked_for(pre):
    """bfloat16: the worker thread that runs the model enters autocast itself (autocast is
    per thread); float32, the default, matches `unmask sample` (the test above)."""
    seen = []
    hook = pre.model.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        for precision, dtype in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
            seen.clear()
            with TestClient(create_app(pre, precision=precision),
                            base_url="http://127.0.0.1") as c:
                assert c.get("/api/model").json()["precision"] == precision
                body = {"seed": 3, "prompt": "ROMEO:", "length": 30, "steps": 10}
                frames = sse_frames(c.post("/api/generate", json=body).text.splitlines())
            assert frames[-1]["type"] == "done" and seen and set(seen) == {dtype}
    finally:
        hook.remove()


def test_unmask_serve_dtype_auto_takes_the_probes_choice(run_dir, monkeypatch, bf16_probe):
    from unmask.cli.main import main

    made = {}

    def fake_create_app(pre, limits, allowed_hosts=None, precision="float32"):
        made["precision"] = precision
        raise SystemExit(0)  # stop before binding a port

    monkeypatch.setattr("unmask.serve.app.create_app", fake_create_app)
    for dtype, expected in (("auto", "bfloat16"), ("float32", "float32")):
        with pytest.raises(SystemExit):
            main(["serve", str(run_dir), "--device", "cpu", "--dtype", dtype])
        assert made.pop("precision") == expected
