# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How the modules reach an Engine over HTTP (paired with doc_fragments/_engine_api.py).

One argument spec, the Engine's base URL (given, or derived from the container's published port)
and one request helper that never raises on an HTTP status. The API key is a secret: it goes in the
``X-Engine-Key`` header and nowhere else (never in a return value, an error message or a log).
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from dataclasses import dataclass
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.urls import open_url

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError

ENGINE_PORT = "8000/tcp"
KEY_HEADER = "X-Engine-Key"
#: Host addresses that mean "every interface": reach them on the loopback address.
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def engine_api_argument_spec() -> dict:
    """Options of doc_fragments/_engine_api.py."""
    return dict(
        url=dict(type="str"),
        api_key=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        timeout=dict(type="float", default=10.0),
        use_proxy=dict(type="bool", default=True),
    )


def check_url(url: str) -> str:
    """The Engine's base URL without a trailing slash, or OptionsError saying what is wrong with it."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        if parts.port == 0:
            raise ValueError("port 0")
    except ValueError as exc:
        raise OptionsError(
            f"url '{safe_url(text)}' is not a valid URL ({exc}): give e.g. http://127.0.0.1:9001"
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionsError(
            f"url '{safe_url(text)}' is not an http:// or https:// URL with a host: give the Engine's base URL, "
            "e.g. http://127.0.0.1:9001 (the module adds /health)."
        )
    if parts.query or parts.fragment:
        raise OptionsError(f"url '{safe_url(text)}' must not carry a query or a fragment: give the Engine's base URL.")
    return text.rstrip("/")


def check_tls_options(params: dict) -> None:
    """OptionsError when the TLS options contradict each other."""
    if params.get("ca_path") and params.get("validate_certs") is False:
        raise OptionsError(
            "ca_path is given but validate_certs is false, so the CA bundle would be ignored: "
            "drop validate_certs=false to verify against ca_path, or drop ca_path."
        )


def safe_url(url: str) -> str:
    """`url` without any user:password part, fit for returns and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def published_engine_port(container_attrs: dict) -> tuple[str, str] | None:
    """(host ip, host port) where the container publishes port 8000, or None.

    The live bindings (NetworkSettings.Ports) win; a container that is not running has none, so the
    configured ones (HostConfig.PortBindings) are used then, when they name a fixed port.
    """
    live = ((container_attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(ENGINE_PORT) or []
    configured = ((container_attrs.get("HostConfig") or {}).get("PortBindings") or {}).get(ENGINE_PORT) or []
    for bindings in (live, configured):
        for binding in bindings:
            port = str(binding.get("HostPort") or "")
            if port.isdigit() and int(port) > 0:
                return binding.get("HostIp") or "", port
    return None


def engine_url_from_container(container_attrs: dict) -> str | None:
    """http://<host>:<port> of the container's published port 8000 (0.0.0.0 and :: become 127.0.0.1)."""
    published = published_engine_port(container_attrs)
    if published is None:
        return None
    host, port = published
    if host in _ANY_ADDRESS:
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass
class EngineResponse:
    """What one request got: an HTTP status (None when nothing answered), the JSON body, or an error."""

    status: int | None
    data: object = None
    error: str | None = None
    error_kind: str | None = None
    #: The body as text, for a streamed answer (engine_stream); None for engine_request.
    text: str | None = None

    @property
    def answered(self) -> bool:
        return self.status is not None


def _decode(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


#: (exception types of the reason, kind, text of it for a URL), most specific first: SSLError is an OSError too.
_NO_ANSWER = (
    (ssl.SSLCertVerificationError, "tls", lambda reason, url: (
        f"TLS certificate verification failed for {url}: {reason.verify_message or reason}. "
        "Give the CA bundle in ca_path (or validate_certs=false for a test host only)."
    )),
    (ssl.SSLError, "tls", lambda reason, url: (
        f"TLS handshake with {url} failed ({reason}). Does the Engine serve plain HTTP? Then use an http:// url."
    )),
    ((socket.timeout, TimeoutError), "timeout",
     lambda reason, url: f"no answer from {url} within the timeout ({reason or 'timed out'})"),
    (ConnectionRefusedError, "refused", lambda reason, url: f"connection refused at {url}: nothing listens there"),
    (socket.gaierror, "dns", lambda reason, url: f"cannot resolve the host of {url}: {reason}"),
    ((ConnectionError, OSError), "connection", lambda reason, url: f"cannot talk to {url}: {reason}"),
)


def _describe(exc: BaseException, url: str) -> tuple[str, str]:
    """(kind, operator-readable text) for an exception raised before any HTTP answer."""
    reason = getattr(exc, "reason", exc)
    for types, kind, text in _NO_ANSWER:
        if isinstance(reason, types):
            return kind, text(reason, url)
    return "connection", f"request to {url} failed: {reason}"


def _request_parts(api_key: str | None, body, accept: str) -> tuple[dict, bytes | None]:
    """(headers, encoded JSON body) of a request; the key goes in the X-Engine-Key header only."""
    headers = {"Accept": accept}
    data = None
    if api_key:
        headers[KEY_HEADER] = api_key
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode("utf-8")
    return headers, data


def _open(url, method, headers, data, timeout, validate_certs, ca_path, use_proxy):
    """open_url as every Engine request uses it: safe redirects only, no netrc, our own agent."""
    return open_url(
        url,
        data=data,
        headers=headers,
        method=method,
        timeout=timeout,
        validate_certs=validate_certs,
        ca_path=ca_path,
        use_proxy=use_proxy,
        follow_redirects="safe",
        use_netrc=False,
        http_agent="september.engine",
    )


def _failed(exc: BaseException, shown_url: str) -> EngineResponse:
    """What a request got when it raised: the error status and JSON body, or no answer at all."""
    if isinstance(exc, HTTPError):
        try:
            raw = exc.read()
        except (OSError, ValueError):
            raw = b""
        return EngineResponse(status=exc.code, data=_decode(raw or b""))
    kind, text = _describe(exc, shown_url)
    return EngineResponse(status=None, error=text, error_kind=kind)


def engine_request(
    method: str,
    url: str,
    *,
    api_key: str | None = None,
    body=None,
    timeout: float = 10.0,
    validate_certs: bool = True,
    ca_path: str | None = None,
    use_proxy: bool = True,
) -> EngineResponse:
    """One request to the Engine. Never raises on an HTTP status or a network error: see EngineResponse.

    The key travels in the X-Engine-Key header only when given (GET /health needs none).
    """
    headers, data = _request_parts(api_key, body, "application/json")
    shown = safe_url(url)
    try:
        response = _open(url, method, headers, data, timeout, validate_certs, ca_path, use_proxy)
        with response:
            return EngineResponse(status=response.getcode(), data=_decode(response.read()))
    except (URLError, OSError, HTTPException, ValueError) as exc:
        return _failed(exc, shown)


def engine_stream(
    method: str,
    url: str,
    *,
    api_key: str | None = None,
    body=None,
    timeout: float = 10.0,
    deadline: float | None = None,
    validate_certs: bool = True,
    ca_path: str | None = None,
    use_proxy: bool = True,
) -> EngineResponse:
    """A request whose answer streams (SSE, POST /execute): the body read line by line into ``text``.

    Reads until the server closes the stream, or until ``deadline`` (a ``time.monotonic()`` value)
    passes; ``timeout`` bounds each wait for data. Never raises on an HTTP status or a network error:
    an error status returns its JSON body in ``data`` as engine_request does; a stream cut short
    keeps what was read in ``text`` with ``error_kind`` ``timeout`` or ``connection``.
    """
    headers, data = _request_parts(api_key, body, "text/event-stream")
    shown = safe_url(url)
    try:
        response = _open(url, method, headers, data, timeout, validate_certs, ca_path, use_proxy)
    except (URLError, OSError, HTTPException, ValueError) as exc:
        return _failed(exc, shown)
    chunks: list[bytes] = []
    with response:
        status = response.getcode()
        try:
            while True:
                line = response.readline()
                if not line:
                    break
                chunks.append(line)
                if deadline is not None and time.monotonic() > deadline:
                    return EngineResponse(
                        status=status,
                        text=b"".join(chunks).decode("utf-8", "replace"),
                        error=f"the answer from {shown} did not end within the time allowed",
                        error_kind="timeout",
                    )
        except (OSError, HTTPException, ValueError) as exc:
            kind, text = _describe(exc, shown)
            return EngineResponse(
                status=status, text=b"".join(chunks).decode("utf-8", "replace"), error=text, error_kind=kind
            )
    return EngineResponse(status=status, text=b"".join(chunks).decode("utf-8", "replace"))
