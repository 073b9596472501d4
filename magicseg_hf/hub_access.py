"""How this process reaches the Hugging Face Hub: the endpoint, offline mode, reachability,
timeouts and the redaction of credentials.

Offline mode is read from the environment when asked (:func:`hub_offline`), never from a value
fixed when huggingface_hub was imported, so a test or a user that sets ``HF_HUB_OFFLINE`` later
is obeyed. Every module that needs the Hub (model loading, publishing) asks here.

Bounds on waiting (the user gets one line within them):

* :func:`hub_reachable` opens a TCP connection and then asks for an HTTP answer, each within
  ``timeout`` (:data:`REACHABILITY_TIMEOUT`, 3 s): an endpoint that accepts connections but never
  answers is unreachable after at most ``2 * timeout``.
* :func:`bounded_hub_calls` puts a timeout (:data:`HUB_CALL_TIMEOUT`, 10 s) on the connect, read,
  write and pool wait of every request huggingface_hub makes inside it, including the requests
  whose callers pass ``timeout=None``; a stalled request fails after that long (huggingface_hub
  may retry it a few times with back-off), never hangs.

``HF_ENDPOINT`` may carry credentials (``https://user:secret@host``); :func:`redact` removes
them, and every message that names the endpoint shows :func:`hub_endpoint_for_display`.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from magicseg_hf.errors import ModelLoadError

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds to wait for a TCP connection to the Hub, and then for its first HTTP answer, before
#: calling it unreachable.
REACHABILITY_TIMEOUT = 3.0
#: Seconds a single Hub request may wait to connect, to send a chunk, or between two chunks of the
#: answer inside :func:`bounded_hub_calls`.
HUB_CALL_TIMEOUT = 10.0
#: The path asked for by the HTTP part of :func:`hub_reachable` (any answer, even 401, will do).
_PROBE_PATH = "/api/whoami-v2"
_TRUE = {"1", "ON", "YES", "TRUE"}

# ``scheme://user:password@host`` -> ``scheme://***@host``
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]+@")
# ``?api_key=...`` / ``&token=...`` -> ``?api_key=***``
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:key|token|secret|password|passwd|pwd|auth|signature|sig|credential)[a-z0-9_.-]*)=)"
    r"[^&;#\s]*"
)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``: the user-info part
    (``user:password@``) and query parameters whose name says key, token, secret, password, auth
    or signature."""
    return _SECRET_QUERY.sub(r"\1***", _URL_USERINFO.sub(r"\1***@", text))


def url_has_credentials(url: str) -> bool:
    """Whether ``url`` carries credentials that :func:`redact` would remove."""
    return redact(url) != url


def hub_endpoint() -> str:
    """The Hub endpoint huggingface_hub talks to (``HF_ENDPOINT``, else huggingface.co)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_endpoint_for_display() -> str:
    """:func:`hub_endpoint` with any credentials in it redacted: the form messages show."""
    return redact(hub_endpoint())


def hub_offline() -> bool:
    """Whether offline mode is on: ``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``), read now."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(name)
        if value is not None and value.strip():
            return value.strip().upper() in _TRUE
    return False


def hub_reachable(timeout: float | None = None) -> bool:
    """Whether the Hub endpoint answers: a TCP connection opens within ``timeout`` seconds
    (default :data:`REACHABILITY_TIMEOUT`, read now) and an HTTP request on it gets any answer (an
    error status counts) within ``timeout`` more."""
    timeout = REACHABILITY_TIMEOUT if timeout is None else timeout
    parsed = urlparse(hub_endpoint())
    host = parsed.hostname or "huggingface.co"
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:  # a port that is not a number
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError:
        return False
    return _answers(parsed.scheme, host, port, parsed.path.rstrip("/") + _PROBE_PATH, timeout)


def _answers(scheme: str, host: str, port: int, path: str, timeout: float) -> bool:
    """Whether ``HEAD path`` on ``host:port`` gets an HTTP answer within ``timeout`` seconds.

    Only "does it answer" is asked: certificates are not checked here (huggingface_hub checks
    them on the real calls).
    """
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("HEAD", path or "/")
        connection.getresponse()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the network failed" for huggingface_hub's HTTP client."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        errors.append(module.TransportError)
    return tuple(errors)


@contextlib.contextmanager
def bounded_hub_calls(timeout: float = HUB_CALL_TIMEOUT) -> Iterator[None]:
    """Inside the block, every request of huggingface_hub's shared HTTP client waits at most
    ``timeout`` seconds to connect, to send a chunk and between two chunks of the answer.

    huggingface_hub's client has no timeout of its own and several ``HfApi`` methods pass
    ``timeout=None``; a request hook fills every unset bound. The client factory in use (a
    user's own, for proxies or certificates, included) is wrapped, not replaced, and restored
    afterwards. huggingface_hub's own log messages (its retry warnings name the URL) pass
    through :func:`redact` meanwhile.
    """
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) or _http.default_client_factory

    def fill_timeouts(request: Any) -> None:
        bounds = dict(request.extensions.get("timeout") or {})
        for key in ("connect", "read", "write", "pool"):
            if bounds.get(key) is None:
                bounds[key] = timeout
        request.extensions["timeout"] = bounds

    def factory() -> Any:
        client = previous()
        hooks = dict(client.event_hooks)
        hooks["request"] = [*hooks.get("request", []), fill_timeouts]
        client.event_hooks = hooks
        return client

    # A logger's filters see only the records made on it: every huggingface_hub logger gets one.
    hub_loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
                   if name == "huggingface_hub" or name.startswith("huggingface_hub.")]
    redacting = _RedactingFilter()
    set_client_factory(factory)
    for hub_logger in hub_loggers:
        hub_logger.addFilter(redacting)
    try:
        yield
    finally:
        for hub_logger in hub_loggers:
            hub_logger.removeFilter(redacting)
        set_client_factory(previous)


class _RedactingFilter(logging.Filter):
    """Rewrites a log record's message with :func:`redact` applied (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def check_model_available(model_id: str, revision: str | None = None, what: str = "model") -> None:
    """Raise :class:`ModelLoadError` at once if ``model_id`` cannot possibly be loaded.

    A ``tiny:`` id always can. A local folder must exist; a Hub id must be in the local cache, or
    offline mode must be off (read now, see :func:`hub_offline`) and the Hub
    reachable. This turns a 20-45 s retry loop into an immediate one-line error.
    """
    if model_id.startswith("tiny:"):
        return
    path = Path(model_id).expanduser()
    if path.exists():
        return
    looks_like_path = model_id.startswith((".", "/", "~")) or os.sep in model_id.strip("/").replace(
        "/", "", 1
    )
    if looks_like_path or model_id.count("/") > 1:
        raise ModelLoadError(f"{what} {model_id!r}: no such folder")
    from huggingface_hub import snapshot_download

    with contextlib.suppress(Exception):
        snapshot_download(model_id, revision=revision, local_files_only=True)
        return
    if hub_offline():
        raise ModelLoadError(
            f"{what} {model_id!r} is not in the local cache and HF_HUB_OFFLINE=1; "
            "download it first or pass a local folder"
        )
    if not hub_reachable():
        raise ModelLoadError(
            f"{what} {model_id!r}: the Hugging Face Hub is unreachable and the model is not cached; "
            "pass a local folder or check the network"
        )
