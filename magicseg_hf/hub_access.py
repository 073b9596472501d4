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
:func:`redact` also replaces the values of ``HF_TOKEN``/``HUGGING_FACE_HUB_TOKEN`` (read at each
call) and of every token or key given to :func:`register_secret` (``--hub_token``, a push's token).

Log records: whichever library logs a URL or a token (httpx/httpx2 logs every request's URL at
INFO, httpcore and urllib3 log connections, huggingface_hub logs retries), inside
:func:`redacted_logging` every record is redacted when it is made — its message, its traceback
and its stack — so no handler (stderr, a file, pytest's capture, a library's own handler) ever
sees the secret. The ``magicseg`` command runs every verb inside it, and :func:`bounded_hub_calls`
(every Hub call of a push) enters it too.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
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


#: Environment variables whose values are secrets wherever they appear (read at each :func:`redact`).
SECRET_ENVIRONMENT = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
#: Shorter values are not treated as secrets: replacing them everywhere would mangle ordinary text.
MIN_SECRET_LENGTH = 8
_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """From now on, in this process, :func:`redact` replaces ``value`` (a token, a key) with
    ``***`` wherever it appears. ``None``, empty and short values (under :data:`MIN_SECRET_LENGTH`
    characters) are ignored."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _SECRETS.add(str(value))


def _known_secrets() -> list[str]:
    """The registered secrets and those of :data:`SECRET_ENVIRONMENT`, longest first."""
    values = set(_SECRETS)
    values.update(value for value in (os.environ.get(name) for name in SECRET_ENVIRONMENT) if value)
    return sorted((value for value in values if len(value) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``: the user-info part
    (``user:password@``) and query parameters whose name says key, token, secret, password, auth
    or signature; and every known token (:func:`register_secret`, :data:`SECRET_ENVIRONMENT`)
    replaced by ``***`` wherever it appears."""
    for secret in _known_secrets():
        text = text.replace(secret, "***")
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

    Only "does it answer" is asked. Certificates are checked (the default context, which honours
    ``SSL_CERT_FILE``); a server whose certificate fails the check has still answered, so it counts
    as reachable and huggingface_hub's real call reports the certificate problem itself.
    """
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("HEAD", path or "/")
        connection.getresponse()
        return True
    except ssl.SSLCertVerificationError:
        return True  # it answered, with a certificate this machine does not trust
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
    ``timeout=None``; a request hook fills every unset bound. The hook is added to the shared
    client huggingface_hub hands out (``huggingface_hub.get_session()``, public API; a user's own
    client factory, for proxies or certificates, made it) and taken off afterwards. Every log
    record made meanwhile (huggingface_hub's retry warnings, httpx's request lines, which name the
    URL) is redacted (:func:`redacted_logging`).
    """
    from huggingface_hub import get_session

    def fill_timeouts(request: Any) -> None:
        bounds = dict(request.extensions.get("timeout") or {})
        for key in ("connect", "read", "write", "pool"):
            if bounds.get(key) is None:
                bounds[key] = timeout
        request.extensions["timeout"] = bounds

    client = get_session()
    previous = client.event_hooks
    client.event_hooks = {**previous, "request": [*previous.get("request", []), fill_timeouts]}
    try:
        with redacted_logging():
            yield
    finally:
        client.event_hooks = previous


def redact_record(record: logging.LogRecord) -> None:
    """Apply :func:`redact` to ``record`` in place: its message (formatted with its arguments),
    its traceback (kept as text, without the exception object, when it held a secret) and its
    stack. A record whose message has nothing to redact keeps its ``msg`` and ``args``."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format: logging would print msg and args when reporting it
        message = f"{record.msg} {record.args!r}"
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        cleaned = redact(text)
        if cleaned != text:  # formatters print exc_text as it is when exc_info is None
            record.exc_info, record.exc_text = None, cleaned
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class _RedactingRecordFactory:
    """A log record factory that makes records with ``previous`` and redacts them
    (:func:`redact_record`): every logger's records, whatever handlers they reach."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        redact_record(record)
        return record


_FACTORY_LOCK = threading.Lock()
_FACTORY_USERS = 0
_FACTORY_INSTALLED: _RedactingRecordFactory | None = None


@contextlib.contextmanager
def redacted_logging() -> Iterator[None]:
    """Inside the block, every log record of this process — any logger, any thread, any handler —
    is redacted as it is made (:func:`redact_record`): the credentials of ``HF_ENDPOINT`` in the
    URLs httpx, httpcore, urllib3 or huggingface_hub log, and every known token.

    Implemented as a log record factory wrapping the one in use; blocks may nest (and overlap in
    threads): the factory is installed by the first and restored by the last to leave (unless
    someone installed another factory meanwhile, which then stays).
    """
    global _FACTORY_USERS, _FACTORY_INSTALLED
    with _FACTORY_LOCK:
        if _FACTORY_USERS == 0:
            _FACTORY_INSTALLED = _RedactingRecordFactory(logging.getLogRecordFactory())
            logging.setLogRecordFactory(_FACTORY_INSTALLED)
        _FACTORY_USERS += 1
    try:
        yield
    finally:
        with _FACTORY_LOCK:
            _FACTORY_USERS -= 1
            if _FACTORY_USERS == 0 and _FACTORY_INSTALLED is not None:
                if logging.getLogRecordFactory() is _FACTORY_INSTALLED:
                    logging.setLogRecordFactory(_FACTORY_INSTALLED.previous)
                _FACTORY_INSTALLED = None


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
