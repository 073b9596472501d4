"""Generation with an LLM prompt backend (a local OpenAI-compatible stand-in) and the filters.

Random tiny models: these prove plumbing (caching, resume, error paths, counting), not quality.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import same_nan

from magicseg_hf.cli import main

SECRET = "sk-test-0123456789abcdef"
NAMES = ("zebra", "violin")


class _FakeLLM(BaseHTTPRequestHandler):
    """Answers chat-completions with a numbered list naming the classes found in the request;
    the answer depends only on (classes, seed). Fails with HTTP 500 once ``budget`` runs out."""

    server: ThreadingHTTPServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state = self.server.state  # type: ignore[attr-defined]
        with state["lock"]:
            state["auth"].add(self.headers.get("Authorization", ""))
            if state["budget"] is not None and state["budget"] <= 0:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"overloaded")
                return
            if state["budget"] is not None:
                state["budget"] -= 1
            state["requests"] += 1
        text = body["messages"][-1]["content"]
        names = [n for n in NAMES if re.search(rf"\b{n}\b", text)]
        subject = " and a ".join(names)
        lines = [f"{i}. a photo of a {subject} in room {body['seed'] % 89 + i}, soft light" for i in range(1, 4)]
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "\n".join(lines)}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def llm_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeLLM)
    server.state = {"lock": threading.Lock(), "requests": 0, "budget": None, "auth": set()}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _rows(folder: Path) -> list[dict]:
    return [r for p in sorted((folder / "data").glob("*.parquet")) for r in same_nan(pq.read_table(p).to_pylist())]


def _args(out: Path, server: ThreadingHTTPServer) -> list[str]:
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return ["generate", "--classes", *NAMES, "--num-pairs", "6", "--output-dir", str(out), "--preset", "tiny",
            "--shard-size", "2", "--batch-size", "2", "--prompt-backend", "openai", "--openai-base-url", url,
            "--prompt-model", "any-model"]


def test_llm_prompts_are_cached_and_replayed_on_resume(llm_server, tmp_path: Path, capsys):
    state = llm_server.state
    straight = tmp_path / "straight"
    assert main(_args(straight, llm_server)) == 0
    asked_straight = state["requests"]
    assert asked_straight >= 6
    cached = [json.loads(line) for line in (straight / "prompts.jsonl").read_text().splitlines()]
    assert len(cached) == asked_straight  # one request per attempt, every answer kept
    assert {r["prompt"] for r in _rows(straight)} <= {c["prompt"] for c in cached}
    assert state["auth"] == {f"Bearer {SECRET}"}

    # the endpoint breaks after 3 answers: one clear line, exit 2, finished shards kept
    broken = tmp_path / "broken"
    state["requests"], state["budget"] = 0, 3
    capsys.readouterr()
    assert main(_args(broken, llm_server)) == 2
    err = capsys.readouterr().err
    assert "HTTP 500" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (broken / ".work" / "shard-00000.json").is_file()
    cached_before = len((broken / "prompts.jsonl").read_text().splitlines())
    assert cached_before == 3

    # resume against the healed endpoint: cached prompts are replayed, not asked again
    state["requests"], state["budget"] = 0, None
    assert main([*_args(broken, llm_server), "--resume"]) == 0
    assert state["requests"] == asked_straight - cached_before
    assert _rows(broken) == _rows(straight)
    for path in broken.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in capsys.readouterr().err


def test_blank_images_are_dropped_and_counted(tmp_path: Path, monkeypatch):
    import magicseg_hf.generation.images as images

    monkeypatch.setattr(images, "BLANK_MAX_VALUE", 1.1)  # every picture counts as the safety checker's black
    out = tmp_path / "blank"
    assert main(["generate", "--classes", "cat", "--num-pairs", "2", "--max-attempts", "4", "--output-dir", str(out),
                 "--preset", "tiny"]) == 0
    summary = json.loads((out / "generation.json").read_text())["summary"]
    assert summary["dropped"]["blank_image"] == 4 and summary["num_rows"] == 0 and summary["shortfall"] == 2


def test_mask_area_filter_is_counted(tmp_path: Path):
    out = tmp_path / "area"
    # a window that excludes every non-empty mask below 100% of the image
    assert main(["generate", "--classes", "cat", "--num-pairs", "3", "--max-attempts", "3", "--output-dir", str(out),
                 "--preset", "tiny", "--min-mask-area", "0.0", "--max-mask-area", "0.000001"]) == 0
    summary = json.loads((out / "generation.json").read_text())["summary"]
    assert summary["dropped"]["mask_area"] + summary["dropped"]["no_detection"] == 3
    assert summary["dropped"]["mask_area"] >= 1


def test_max_boxes_caps_detections_per_image(tmp_path: Path):
    out = tmp_path / "capped"
    assert main(["generate", "--classes", "cat", "dog", "--num-pairs", "3", "--output-dir", str(out),
                 "--preset", "tiny", "--max-boxes", "2"]) == 0
    rows = _rows(out)
    assert rows and all(1 <= len(r["boxes"]) <= 2 for r in rows)
    # the kept boxes are the highest-scoring ones
    assert all(r["box_scores"] == sorted(r["box_scores"], reverse=True) or len(r["box_scores"]) == 1 for r in rows)
