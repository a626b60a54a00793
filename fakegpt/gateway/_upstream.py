"""The gateway's client of an OpenAI-compatible model server: one streamed
``POST {base}/chat/completions`` per reply (read by :mod:`._reply`), the
model and the key, and every failure before the reply began turned into the
answer the shared-account protocol has for it."""
from __future__ import annotations

import http.client
import json
import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import requests
from urllib3.exceptions import NewConnectionError

from .._capped import read_capped
from .._http import MAX_ERROR_BODY, describe, host_of, read_capped as read_http_body
from .._secrets import redact_text, redact_url, register_secret, register_url
from .._retry import causes
from .._transport import Adapter, HttpSession, watching
from ..emulator import HangUp, RequestError
from ..exceptions import FakeGptError, detail_from_body, one_line
from ._messages import chat_messages
from ._reply import UpstreamReply, _Cancel

__all__ = ["API_KEY_VARIABLES", "Upstream"]

#: Where the model server's API key is read from, first found first.
API_KEY_VARIABLES = ("FAKEGPT_UPSTREAM_API_KEY", "OPENAI_API_KEY")
#: The largest answer that is not a stream (``/models``, a reply sent whole).
_MAX_ANSWER = 4 << 20


def _closed_unanswered(error: BaseException) -> bool:
    """Whether *error* is a connection the server closed before any answer (not a refused connection)."""
    seen = causes(error)
    return (any(isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)) for e in seen)
            and not any(isinstance(e, NewConnectionError) for e in seen))



class Upstream:
    """An OpenAI-compatible model server, as the emulator's responder
    (``Emulator(upstream=Upstream(...))``; :mod:`fakegpt.gateway`).

    :param base_url: the API base, e.g. ``http://127.0.0.1:11434/v1`` (``/chat/completions`` is appended).
    :param model: the model to ask; ``None``: the first one ``GET {base}/models`` lists (asked once).
    :param api_key: sent as ``Authorization: Bearer``; ``None``: ``$FAKEGPT_UPSTREAM_API_KEY``,
        else ``$OPENAI_API_KEY``, else no key. Never logged, shown or put in an error.
    :param timeout: seconds, or ``(connect, read)`` seconds; the read timeout
        bounds the wait for the answer and between two pieces of the stream
        (by default 100 s: shorter than a fakegpt client's 120 s, so that the
        client hears the gateway's 504 rather than timing out itself).
    """

    def __init__(self, base_url: str, *, model: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: Union[float, Tuple[float, float]] = (10.0, 100.0)) -> None:
        if not isinstance(base_url, str) or not base_url.lower().startswith(("http://", "https://")):
            raise ValueError(f"the upstream must be an http:// or https:// URL, not {redact_url(str(base_url))!r}")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ValueError("model must be a non-empty str, or None for the first model the server lists")
        seconds = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        if len(seconds) != 2 or not all(isinstance(s, (int, float)) and s > 0 for s in seconds):
            raise ValueError("timeout must be positive seconds, or (connect, read) seconds")
        self.base_url = base_url.rstrip("/")
        register_url(self, self.base_url)
        self.where = host_of(self.base_url)
        self.timeout: Tuple[float, float] = (float(seconds[0]), float(seconds[1]))
        if api_key is None:
            api_key = next((os.environ[name] for name in API_KEY_VARIABLES if os.environ.get(name)), None)
        self._api_key = api_key or None
        register_secret(self, self._api_key)
        self._model = model
        self._model_lock = threading.Lock()
        self._session = HttpSession()
        adapter = Adapter(pool_connections=2, pool_maxsize=256)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Accept-Encoding"] = "identity"  # each delta as it comes, no decoder in between
        if self._api_key:
            self._session.headers["Authorization"] = f"Bearer {self._api_key}"

    def __repr__(self) -> str:
        return f"<fakegpt.gateway.Upstream {redact_url(self.base_url)} model={self._model!r}>"

    def redact(self, text: str) -> str:
        """*text* on one line, the API key and URL credentials hidden."""
        return one_line(redact_text(text, [self._api_key]), 300)

    @property
    def model(self) -> str:
        """The model asked for (the first one the server lists, if none was given; asked once)."""
        with self._model_lock:
            if self._model is None:
                try:
                    answer = self._json(self._request("GET", "/models", "listing its models"))
                except RequestError as error:
                    if error.status == 429:
                        raise
                    raise RequestError(502, f"{error.detail}; or give the gateway a model "
                                            "(--upstream-model, Upstream(model=...))") from None
                listed = answer.get("data") if isinstance(answer, dict) else None
                names = [m.get("id") for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
                if not names or not isinstance(names[0], str) or not names[0]:
                    raise RequestError(502, f"the model server ({self.where}) lists no model: "
                                            "start the gateway with a model (--upstream-model)")
                self._model = names[0]
            return self._model

    def respond(self, prompt: str, history: Sequence[Tuple[str, str]], partial: Optional[str] = None,
                hangup: Optional[HangUp] = None) -> UpstreamReply:
        """The emulator's responder: the whole path of the conversation, streamed from the model."""
        return self.stream(chat_messages(prompt, history, partial), hangup)

    def stream(self, messages: List[Dict[str, str]], hangup: Optional[HangUp] = None) -> UpstreamReply:
        """Ask for a streamed reply to *messages*; returns once the model server
        accepted (a 2xx), else raises :class:`~fakegpt.emulator.RequestError`
        with the status for the gateway's client."""
        cancel = _Cancel()
        if hangup is not None:
            hangup.on_hang_up(cancel.cancel)
        body = {"model": self.model, "messages": messages, "stream": True}
        return UpstreamReply(self, self._request("POST", "/chat/completions", "answering", body, cancel), cancel)

    def close(self) -> None:
        """Close every connection to the model server."""
        self._session.close()

    # -- HTTP -----------------------------------------------------------------
    def _request(self, method: str, path: str, doing: str, body: Any = None,
                 cancel: Optional[_Cancel] = None) -> requests.Response:
        """Send a request; its answer once a 2xx began, else the :class:`RequestError` for the client."""
        cancel = cancel or _Cancel()
        try:
            response = self._send(method, path, body, cancel)
        except (requests.exceptions.RequestException, FakeGptError, OSError) as error:
            cancel.done()
            raise self._failed(error, doing, cancel) from None
        except BaseException:
            cancel.done()
            raise
        content_type = response.headers.get("Content-Type", "").lower()
        if response.status_code < 300 and "html" not in content_type:
            return response
        cancel.done()
        if response.status_code < 300:  # a login page or a proxy's, not the API
            response.close()
            raise RequestError(502, f"the model server ({self.where}) answered with an HTML page {doing}: "
                                    "is the URL its API base (e.g. ending in /v1)?")
        raise self._status_error(response, doing)

    def _send(self, method: str, path: str, body: Any, cancel: _Cancel) -> requests.Response:
        for attempt in (1, 2):
            try:
                with watching(cancel):
                    return self._session.request(method, self.base_url + path, json=body, stream=True,
                                                 timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.ConnectionError as error:
                # A kept-alive connection the server had closed meanwhile: the request was not
                # accepted (no answer began), so it goes once more, on a new connection.
                if attempt == 2 or cancel.cancelled or not _closed_unanswered(error):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed(self, error: BaseException, doing: str, cancel: _Cancel) -> RequestError:
        if isinstance(error, requests.exceptions.Timeout):
            connecting = isinstance(error, requests.exceptions.ConnectTimeout)
            waited = f"no connection within {self.timeout[0]:g} s" if connecting else \
                f"no answer within {self.timeout[1]:g} s"
            return RequestError(504, f"the model server ({self.where}) timed out {doing}: {waited}")
        if cancel.cancelled:
            return RequestError(499, "the client hung up")
        return RequestError(502, self.redact(f"the model server ({self.where}) failed {doing}: {describe(error)}"))

    def _status_error(self, response: requests.Response, doing: str) -> RequestError:
        status = response.status_code
        body = read_http_body(response, MAX_ERROR_BODY, doing, truncate=True)  # closes it; a cut body: what came
        detail = detail_from_body(body, response.headers.get("Content-Type", "")) or "no detail"
        said = f"the model server ({self.where}) answered HTTP {status} {doing}"
        if status == 429:
            retry_after = response.headers.get("Retry-After", "").strip()
            headers = {"Retry-After": retry_after} if retry_after and len(retry_after) <= 64 else {}
            return RequestError(429, self.redact(f"{said}: rate limited: {detail}"), headers)
        if status in (401, 403):  # never the client's 401: it would drop its own, good, access token
            return RequestError(502, f"{said}: the gateway's credentials for it were refused; set "
                                     "FAKEGPT_UPSTREAM_API_KEY (or OPENAI_API_KEY) to a key it accepts")
        return RequestError(504 if status in (408, 504) else 502, self.redact(f"{said}: {detail}"))

    def _json(self, response: requests.Response) -> Any:
        try:
            return json.loads(read_capped(response.iter_content(65536), _MAX_ANSWER))
        except FakeGptError:
            raise RequestError(502, f"the model server ({self.where}) sent an answer larger than "
                                    f"{_MAX_ANSWER:,} bytes") from None
        except Exception as error:  # noqa: BLE001 - not JSON, or cut
            raise RequestError(502, self.redact(f"the model server ({self.where}) sent an answer that cannot be "
                                                f"read: {describe(error)}")) from None
        finally:
            response.close()
