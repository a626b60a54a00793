"""The emulator: every endpoint and every fault knob, over loopback."""
import json
import logging
import socket
import time
import uuid

import pytest
import requests

from fakegpt._protocol import ReplyDecoder, conversation_body
from fakegpt._sse import SSEDecoder
from fakegpt.emulator import Emulator, default_responder


@pytest.fixture
def emulator(fakegpt_emulator):
    return fakegpt_emulator


def login(emulator, session=None, token=None):
    """The shared-token login by hand; returns (session, access token)."""
    session = session or requests.Session()
    token = token or emulator.tokens[0]
    answer = session.post(f"{emulator.url}/auth/login", data={"token_key": token, "session_password": "pw"},
                          allow_redirects=False)
    assert answer.status_code == 302, answer.text
    access = session.get(f"{emulator.url}/api/auth/session").json()["accessToken"]
    return session, access


def converse(emulator, access, body=None, **headers):
    body = body or conversation_body("Hello emulator", "gpt-3.5-turbo")
    return requests.post(f"{emulator.url}/api/conversation", json=body, stream=True,
                         headers={"X-Authorization": f"Bearer {access}", **headers})


def events(response):
    decoder = SSEDecoder()
    out = decoder.feed(response.content) + decoder.close()
    return out


def raw_request(emulator, data: bytes, *, shut_write=False) -> bytes:
    with socket.create_connection(("127.0.0.1", emulator.port)) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


# -- lifecycle ---------------------------------------------------------------------
def test_url_uses_localhost_and_a_free_port():
    with Emulator() as one, Emulator() as two:
        assert one.url.startswith("http://localhost:") and one.port != two.port and one.port > 0
        assert "localhost" in repr(one)
    with pytest.raises(RuntimeError, match="not running"):
        one.url  # noqa: B018


@pytest.mark.parametrize("kwargs, text", [({"format": "xml"}, "format"), ({"newline": "\t"}, "newline"),
                                          ({"delay": -1}, "delay")])
def test_bad_options(kwargs, text):
    with pytest.raises(ValueError, match=text):
        Emulator(**kwargs)


def test_stop_hangs_up_a_stalled_stream_promptly():
    emulator = Emulator().start()
    _, access = login(emulator)
    emulator.stream_fault("stall", after_words=1)
    response = converse(emulator, access)
    emulator.stop()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # the stall is endless: stop() ended it
        response.content  # noqa: B018


# -- endpoints -----------------------------------------------------------------------
def test_home_page_for_clients_that_follow_the_login_redirect(emulator):
    answer = requests.get(f"{emulator.url}/?v=2")
    assert answer.status_code == 200 and "html" in answer.headers["Content-Type"]
    assert requests.head(f"{emulator.url}/").status_code == 200


def test_loads_lists_the_tokens(emulator):
    busy = emulator.add_token(count=7)
    loads = requests.get(f"{emulator.url}/api/loads", params={"t": 1}).json()["loads"]
    assert [entry["token_id"] for entry in loads] == emulator.tokens and len(loads) == 4
    assert all(len(entry["token_id"]) == 32 for entry in loads)
    assert {"token_id": busy, "count": 7, "plus": False, "show_user_info": False} in loads
    emulator.clear_tokens()
    assert requests.get(f"{emulator.url}/api/loads").json() == {"loads": []}
    assert emulator.counts["loads"] == 2


def test_challenge_page(emulator):
    emulator.challenge = True
    answer = requests.get(f"{emulator.url}/api/loads")
    assert answer.status_code == 403 and "<title>Just a moment...</title>" in answer.text
    assert answer.headers["Content-Type"].startswith("text/html")


def test_login_sets_the_credential_cookie(emulator):
    answer = requests.post(f"{emulator.url}/auth/login",
                           data={"token_key": emulator.tokens[0], "session_password": "pw"}, allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"] == "/?v=2"
    assert answer.cookies.get("credential") and "HttpOnly" in answer.headers["Set-Cookie"]
    assert emulator.counts["logins"] == 1


@pytest.mark.parametrize("form", [{"token_key": "nope", "session_password": "pw"},
                                  {"token_key": "TOKEN", "session_password": ""}, {}])
def test_bad_logins_are_400_json(emulator, form):
    form = {k: (emulator.tokens[0] if v == "TOKEN" else v) for k, v in form.items()}
    answer = requests.post(f"{emulator.url}/auth/login", data=form, allow_redirects=False)
    assert answer.status_code == 400 and "400" in answer.json()["detail"]
    assert emulator.counts["login_failures"] == 1 and not answer.cookies


def test_dead_tokens(emulator):
    dead_login = emulator.add_token(dead="login")
    answer = requests.post(f"{emulator.url}/auth/login", data={"token_key": dead_login, "session_password": "pw"},
                           allow_redirects=False)
    assert answer.status_code == 400
    dead_session = emulator.add_token(dead="session")
    session = requests.Session()
    session.post(f"{emulator.url}/auth/login", data={"token_key": dead_session, "session_password": "pw"},
                 allow_redirects=False)
    assert session.get(f"{emulator.url}/api/auth/session").json() == {}
    with pytest.raises(ValueError):
        emulator.add_token(dead="zombie")


def test_session_without_a_cookie_is_empty_json(emulator):
    answer = requests.get(f"{emulator.url}/api/auth/session")
    assert answer.status_code == 200 and answer.json() == {}


def test_session_answer_shape(emulator):
    session, access = login(emulator)
    body = session.get(f"{emulator.url}/api/auth/session").json()
    assert set(body) == {"user", "expires", "accessToken", "authProvider"} and body["authProvider"] == "auth0"
    assert body["accessToken"] != access  # every session call issues a token


def test_conversation_stream_format_a(emulator):
    _, access = login(emulator)
    response = converse(emulator, access)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Transfer-Encoding"] == "chunked"
    frames = events(response)
    payloads = [json.loads(d) for e, d in frames if d != b"[DONE]" and e != "ping"]
    roles = [p["message"]["author"]["role"] for p in payloads if p.get("message")]
    assert roles[:2] == ["system", "user"] and set(roles[2:]) == {"assistant"}
    assert payloads[1]["message"]["metadata"].get("message_type") is None  # the echo
    assert any("moderation_response" in p for p in payloads)
    assert ("ping", b"{}") in frames and frames[-1] == ("message", b"[DONE]")
    final = payloads[-1]["message"]
    assert final["status"] == "finished_successfully" and final["end_turn"] is True
    assert final["metadata"]["finish_details"]["type"] == "stop"
    assert final["content"]["parts"][0] == default_responder("Hello emulator")
    texts = [p["message"]["content"]["parts"][0] for p in payloads if p.get("message", {}) and
             p["message"]["author"]["role"] == "assistant"]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))  # cumulative


def test_conversation_stream_has_ping_comments(emulator):
    _, access = login(emulator)
    assert b"\n: ping - " in converse(emulator, access).content


def test_format_b_when_the_client_asks_or_when_configured(emulator):
    _, access = login(emulator)
    body = conversation_body("Hello emulator", "gpt-4o-mini")
    body["supported_encodings"] = ["v1"]
    for response in (converse(emulator, access, body),):
        frames = events(response)
        assert frames[0] == ("delta_encoding", b'"v1"')
        assert any(e == "delta" and json.loads(d).get("o") == "patch" for e, d in frames)
        decoder = ReplyDecoder()
        for event, data in frames:
            decoder.feed(event, data)
        assert decoder.text == default_responder("Hello emulator") and decoder.model == "gpt-4o-mini"
    emulator.format = "v1"
    assert events(converse(emulator, access))[0] == ("delta_encoding", b'"v1"')


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_newline_knob(emulator, newline):
    emulator.newline = newline
    _, access = login(emulator)
    content = converse(emulator, access).content
    assert content.count(newline.encode() * 2) > 10 and (newline == "\r" or b"\n\n" not in content.replace(b"\r\n", b""))


def test_close_delimited_knob(emulator):
    emulator.chunked = False
    _, access = login(emulator)
    response = converse(emulator, access)
    assert "Transfer-Encoding" not in response.headers and response.headers["Connection"] == "close"
    assert response.content.endswith(b"data: [DONE]\n\n")


def test_split_knob_writes_small_chunks(emulator):
    emulator.split = 5
    _, access = login(emulator)
    response = converse(emulator, access)
    chunks = list(response.raw.read_chunked())
    assert max(len(c) for c in chunks) <= 5 and b"".join(chunks).endswith(b"[DONE]\n\n")


def test_delay_between_words(emulator):
    emulator.delay = 0.05
    emulator.responder = lambda prompt: "a b c d"
    _, access = login(emulator)
    started = time.monotonic()
    converse(emulator, access).content  # noqa: B018
    assert time.monotonic() - started >= 0.2  # at least the delays (a slower machine only adds)


def test_custom_responders_with_and_without_history(emulator):
    seen = []
    emulator.responder = lambda prompt: f"echo: {prompt}"
    _, access = login(emulator)
    assert b"echo: Hello emulator" in converse(emulator, access).content

    def with_history(prompt, history):
        seen.append(list(history))
        return "ok"

    emulator.responder = with_history
    converse(emulator, access).content  # noqa: B018
    assert seen == [[]]


@pytest.mark.parametrize("responder, text", [(lambda p: 1 / 0, "ZeroDivisionError"), (lambda p: 42, "not str")])
def test_a_failing_responder_is_a_500_json_answer(emulator, responder, text):
    emulator.responder = responder
    _, access = login(emulator)
    answer = converse(emulator, access)
    assert answer.status_code == 500 and text in answer.json()["detail"]


# -- malformed requests ------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers, body, status, text",
    [
        ({}, b"{not json", 400, "not valid JSON"),
        ({}, b"[1, 2]", 400, "JSON object"),
        ({}, json.dumps({"action": "dance", "model": "m", "parent_message_id": "p"}).encode(), 400, "action"),
        ({}, json.dumps({"action": "next", "parent_message_id": "p"}).encode(), 422, "model"),
        ({}, json.dumps({"action": "next", "model": "m"}).encode(), 422, "parent_message_id"),
        ({}, json.dumps({"action": "next", "model": "m", "parent_message_id": "p"}).encode(), 422, "messages"),
        ({}, json.dumps({"action": "next", "model": "m", "parent_message_id": "p",
                         "messages": [{"author": {"role": "user"}, "content": {"parts": [1]}}]}).encode(), 422, "parts"),
        ({}, json.dumps({"action": "next", "model": "m", "parent_message_id": "p",
                         "messages": [{"author": {"role": "system"}, "content": {"parts": ["x"]}}]}).encode(), 422,
         "author.role"),
        ({}, json.dumps({"action": "continue", "model": "m", "parent_message_id": "p"}).encode(), 400,
         "conversation_id"),
    ],
)
def test_malformed_conversation_requests(emulator, headers, body, status, text):
    _, access = login(emulator)
    answer = requests.post(f"{emulator.url}/api/conversation", data=body,
                           headers={"X-Authorization": f"Bearer {access}", "Content-Type": "application/json"})
    assert answer.status_code == status and text in json.dumps(answer.json()["detail"])


def test_conversation_needs_a_valid_bearer(emulator):
    for headers in ({}, {"X-Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        answer = requests.post(f"{emulator.url}/api/conversation", json={}, headers=headers)
        assert answer.status_code == 401 and answer.json()["detail"]["code"] == "invalid_token"
    _, access = login(emulator)
    assert converse(emulator, access, **{"X-Authorization": "", "Authorization": f"Bearer {access}"}).ok


def test_unknown_conversation_is_404(emulator):
    _, access = login(emulator)
    body = conversation_body("hi", "gpt-3.5-turbo", conversation_id=str(uuid.uuid4()), parent_message_id="p")
    answer = converse(emulator, access, body)
    assert answer.status_code == 404 and answer.json() == {"detail": "Conversation not found"}


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
        (b"PUT /api/loads HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
        (b"POST /api/loads HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405),
        (b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"POST /auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
    ],
)
def test_malformed_http_gets_a_json_4xx(emulator, request_bytes, status):
    answer = raw_request(emulator, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), answer[:200]
    assert b"application/json" in head and "detail" in json.loads(body)


def test_short_body_is_a_400_not_a_hang(emulator):
    answer = raw_request(emulator, b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
                         shut_write=True)
    assert b" 400 " in answer.split(b"\r\n")[0]


def test_the_logs_escape_control_characters_of_a_request_and_cap_its_line(emulator, caplog):
    caplog.set_level(logging.DEBUG, logger="fakegpt.emulator")
    long_path = b"/" + b"a" * 5000
    raw_request(emulator, b"GET /\x1b[2J\x1b[31mFAKE\x07\\x1b\x9b" + long_path + b" HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
    raw_request(emulator, b"NONSENSE\x1b]0;title\x07\r\n\r\n")  # (a 400)
    access = [r.getMessage() for r in caplog.records if r.name == "fakegpt.emulator.access"]
    assert len(access) == 2
    assert access[1] == '127.0.0.1 "NONSENSE\\x1b]0;title\\x07" 400 -'
    for line in access:
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line), repr(line)
    assert access[0].startswith('127.0.0.1 "GET /\\x1b[2J\\x1b[31mFAKE\\x07\\\\x1b\\x9b/aaa')
    assert access[0].endswith('..." 404 -') and len(access[0]) < 1100  # cut, not 5,000 characters


# -- faults ------------------------------------------------------------------------------
def test_fail_next_with_defaults_bodies_headers_and_times(emulator):
    _, access = login(emulator)
    emulator.fail_next(429, headers={"Retry-After": "7"}, times=2)
    emulator.fail_next(503, "upstream down")
    emulator.fail_next(401)
    for expected in (429, 429):
        answer = converse(emulator, access)
        assert answer.status_code == expected and answer.headers["Retry-After"] == "7"
        assert "Too many requests" in answer.json()["detail"]
    answer = converse(emulator, access)
    assert answer.status_code == 503 and answer.text == "upstream down"
    assert converse(emulator, access).json()["detail"]["code"] == "token_expired"
    assert converse(emulator, access).status_code == 200
    assert emulator.counts["failures"] == 4 and emulator.counts["conversations"] == 5


def test_stream_fault_error(emulator):
    _, access = login(emulator)
    emulator.stream_fault("error", after_words=2, message="boom")
    frames = events(converse(emulator, access))
    assert json.loads(frames[-2][1]) == {"message": None, "conversation_id": json.loads(frames[-3][1])[
        "conversation_id"], "error": "boom"}
    assert frames[-1] == ("message", b"[DONE]")


def test_stream_fault_truncate_ends_the_body_without_done(emulator):
    _, access = login(emulator)
    emulator.stream_fault("truncate", after_words=3)
    content = converse(emulator, access).content
    assert b"[DONE]" not in content and content.count(b'"role": "assistant"') == 3


def test_stream_fault_drop_cuts_the_connection(emulator):
    _, access = login(emulator)
    emulator.stream_fault("drop", after_words=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        converse(emulator, access).content  # noqa: B018


def test_stream_fault_stall_then_continue(emulator):
    _, access = login(emulator)
    emulator.stream_fault("stall", after_words=2, seconds=0.3)
    started = time.monotonic()
    content = converse(emulator, access).content
    assert content.endswith(b"[DONE]\n\n") and time.monotonic() - started >= 0.3


def test_stream_fault_stall_sees_the_client_hang_up(emulator):
    _, access = login(emulator)
    emulator.stream_fault("stall", after_words=1)
    response = converse(emulator, access)
    next(response.raw.stream(10))
    response.close()
    assert emulator.wait_until(lambda e: e.counts["disconnects"] == 1, timeout=1)


def test_stream_fault_hold_keeps_the_body_open_after_done(emulator):
    _, access = login(emulator)
    emulator.stream_fault("hold", seconds=0.5)
    started = time.monotonic()
    content = converse(emulator, access).content
    assert content.endswith(b"[DONE]\n\n") and time.monotonic() - started >= 0.5


def test_stream_fault_validation(emulator):
    with pytest.raises(ValueError, match="kind"):
        emulator.stream_fault("explode")


def test_expiring_access_tokens(emulator):
    _, access = login(emulator)
    emulator.expire_access_tokens()
    answer = converse(emulator, access)
    assert answer.status_code == 401 and answer.json()["detail"]["code"] == "token_expired"
    _, fresh = login(emulator)
    assert converse(emulator, fresh).ok


def test_token_ttl(emulator):
    emulator.token_ttl = 0.2
    _, access = login(emulator)
    assert converse(emulator, access).ok
    time.sleep(0.3)
    assert converse(emulator, access).status_code == 401


def test_killing_a_token_revokes_its_access_tokens(emulator):
    _, access = login(emulator)
    emulator.kill_token(emulator.tokens[0])
    assert converse(emulator, access).status_code == 401
    with pytest.raises(ValueError):
        emulator.kill_token(how="slowly")


# -- observation ---------------------------------------------------------------------------
def test_request_log_counts_and_reset(emulator):
    session, access = login(emulator)
    converse(emulator, access).content  # noqa: B018
    log = emulator.requests
    assert [(r.method, r.path.split("?")[0]) for r in log] == [
        ("POST", "/auth/login"), ("GET", "/api/auth/session"), ("POST", "/api/conversation")]
    assert b"token_key=" in log[0].body and log[2].headers["X-Authorization"] == f"Bearer {access}"
    assert emulator.counts["streams"] == 1 and emulator.counts["connections"] >= 2
    emulator.reset()
    assert emulator.requests == [] and emulator.counts == {} and emulator.tokens
    assert converse(emulator, access).status_code == 401  # issued tokens are forgotten


def test_a_recorded_requests_repr_shows_neither_its_headers_nor_its_body(emulator):
    session, access = login(emulator)
    converse(emulator, access).content  # noqa: B018
    login_request, _, conversation = emulator.requests
    assert b"session_password=pw" in login_request.body and access in conversation.headers["X-Authorization"]
    shown = repr(login_request) + repr(conversation)
    assert access not in shown and "session_password" not in shown and "Bearer" not in shown
    assert "/auth/login" in shown and "'POST'" in shown


def test_wait_until_times_out(emulator):
    assert emulator.wait_until(lambda e: e.counts["logins"] > 0, timeout=0.1) is False


def test_a_message_id_that_already_exists_is_refused_not_a_hang(emulator):
    _, access = login(emulator)
    first = conversation_body("one", "gpt-3.5-turbo", keep_history=True)
    response = converse(emulator, access, first)
    conversation_id = next(json.loads(d)["conversation_id"] for e, d in events(response) if d.startswith(b"{\"message"))
    parent = first["messages"][0]["id"]  # the user message: reuse its id as the new one
    again = conversation_body("two", "gpt-3.5-turbo", conversation_id=conversation_id, parent_message_id=parent,
                              message_id=parent)
    answer = requests.post(f"{emulator.url}/api/conversation", json=again, timeout=5,
                           headers={"X-Authorization": f"Bearer {access}"})
    assert answer.status_code == 409 and "already" in answer.json()["detail"]
    assert requests.get(f"{emulator.url}/api/loads", timeout=5).ok  # the emulator still answers


def test_history_walk_stops_on_a_cycle():
    from fakegpt.emulator._conversations import _Conversation, _Message

    conversation = _Conversation(("t", "p"))
    conversation.messages["a"] = _Message("user", "x", "b")
    conversation.messages["b"] = _Message("assistant", "y", "a")
    assert [role for role, _ in conversation.history("a")] == ["assistant", "user"]
