"""The Hub under a hostile network: a server that never answers (reachability, push and model
loading fail at once, in one line, within their bounds) and credentials in ``HF_ENDPOINT`` or a
token (redacted from every message). Offline: the servers are local sockets."""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import write_dataset_folder
from test_generate_resume import assert_one_line, run_cli

from magicseg_hf import hub_access, loading, publish
from magicseg_hf.errors import MagicSegError, ModelLoadError


# ----------------------------------------------------------------------------------------------
# The Hub: a server that never answers, credentials in HF_ENDPOINT
# ----------------------------------------------------------------------------------------------
@pytest.fixture()
def silent_server():
    """A TCP server that accepts connections and never answers; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.fixture()
def answering_server():
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory) -> Path:
    return write_dataset_folder(tmp_path_factory.mktemp("hub") / "ds", num_rows=3)


def test_reachability_asks_for_an_answer_not_just_a_connection(silent_server, answering_server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{answering_server}")
    assert hub_access.hub_reachable(2.0)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent_server}")
    start = time.perf_counter()
    assert not hub_access.hub_reachable(0.5)
    assert time.perf_counter() - start < 2


def test_push_to_a_hub_that_never_answers_is_one_line_within_the_bound(dataset_folder, silent_server, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setenv("HF_ENDPOINT", f"http://erin:hunter2@127.0.0.1:{silent_server}")
    start = time.perf_counter()
    code, err = run_cli(["push", str(dataset_folder), "--repo-id", "erin/data"], capsys)
    elapsed = time.perf_counter() - start
    assert code == 2 and elapsed < 2 * hub_access.REACHABILITY_TIMEOUT + 3
    assert f"cannot reach the Hugging Face Hub at http://***@127.0.0.1:{silent_server} (no answer within 3 s)" in err
    assert_one_line(err)
    assert "hunter2" not in err


def test_every_hub_request_has_a_timeout_and_no_message_shows_credentials(dataset_folder, silent_server, monkeypatch,
                                                                             caplog):
    """Past the reachability check the Hub stops answering: each request ends after hub_timeout."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read by huggingface_hub at its import
    monkeypatch.setenv("HF_ENDPOINT", f"http://erin:hunter2@127.0.0.1:{silent_server}")
    monkeypatch.setattr(hub_access, "hub_reachable", lambda timeout=hub_access.REACHABILITY_TIMEOUT: True)
    start = time.perf_counter()
    with caplog.at_level(logging.DEBUG), pytest.raises(MagicSegError) as caught:
        publish.push_dataset_folder(dataset_folder, "erin/data", token="hf_x", hub_timeout=0.3)
    assert time.perf_counter() - start < 30
    message = str(caught.value)
    assert message == (f"the Hugging Face Hub at http://***@127.0.0.1:{silent_server} did not answer within 0.3 s "
                       "(ReadTimeout); check the network and push again")
    assert not any("hunter2" in record.getMessage() for record in caplog.records)


def test_hub_errors_naming_the_endpoint_are_redacted(dataset_folder, tmp_path, monkeypatch):
    import httpx2
    from helpers import HubStandIn
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    HubStandIn(tmp_path / "hub").install(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", "https://erin:hunter2@hub.example?token=hunter2")

    def refuse(*args, **kwargs):
        request = httpx2.Request("POST", "https://erin:hunter2@hub.example/api/repos/create")
        raise HfHubHTTPError("500 Server Error for url https://erin:hunter2@hub.example/api/repos/create?sig=hunter2",
                             response=httpx2.Response(500, request=request))

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(MagicSegError) as caught:
        publish.push_dataset_folder(dataset_folder, "erin/data")
    assert "hunter2" not in str(caught.value) and "https://***@hub.example" in str(caught.value)

    def drop(*args, **kwargs):
        raise httpx2.ConnectError("connection reset")

    monkeypatch.setattr(HfApi, "create_repo", drop)
    with pytest.raises(MagicSegError) as caught:
        publish.push_dataset_folder(dataset_folder, "erin/data")
    assert str(caught.value) == "cannot reach the Hugging Face Hub at https://***@hub.example?token=***: ConnectError"


def test_model_loading_fails_at_once_on_a_hub_that_never_answers(silent_server, monkeypatch):
    monkeypatch.setattr(hub_access, "REACHABILITY_TIMEOUT", 0.5)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent_server}")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="unreachable"):
        loading.check_model_available("someone/not-cached-model", what="diffusion model")
    assert time.perf_counter() - start < 2


def test_redact_removes_user_info_and_secret_query_values():
    assert hub_access.redact("see https://u:p@host/x?api_key=1&x=2&token=abc ok") == (
        "see https://***@host/x?api_key=***&x=2&token=*** ok"
    )
    assert hub_access.redact("http://host:8000/v1") == "http://host:8000/v1"
