"""How this process reaches the Hugging Face Hub: the endpoint, offline mode, reachability.

Offline mode is read from the environment when asked (:func:`hub_offline`), never from a value
fixed when huggingface_hub was imported, so a test or a user that sets ``HF_HUB_OFFLINE`` later
is obeyed. Every module that needs the Hub (model loading, publishing) asks here.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds to wait for a TCP connection to the Hub before calling it unreachable.
REACHABILITY_TIMEOUT = 3.0
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_endpoint() -> str:
    """The Hub endpoint huggingface_hub talks to (``HF_ENDPOINT``, else huggingface.co)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """Whether offline mode is on: ``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``), read now."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(name)
        if value is not None and value.strip():
            return value.strip().upper() in _TRUE
    return False


def hub_reachable(timeout: float = REACHABILITY_TIMEOUT) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds."""
    parsed = urlparse(hub_endpoint())
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


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
