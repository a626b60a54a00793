"""Secrets never leak: the redaction helpers, and a scan of everything a user
can see (messages, reprs, tracebacks, warnings, DEBUG log records) over every
failure scenario, for the access token, the session password and URL
credentials, down to any 8 characters of them in a row."""
import base64
import gc
import json
import logging
import os
import secrets
import socket
import threading
import traceback
import warnings

import pytest
import requests

import fakegpt
from fakegpt._cache import SessionCache
from fakegpt._secrets import redact_text, redact_url, register_secret, register_url, without_userinfo
from fakegpt.emulator import Emulator

from .conftest import BASE, MESSAGES, TOKENS, assistant, sse
from .netkit import read_request


class Holder:
    """Something that owns secrets."""


# -- the helpers -------------------------------------------------------------------------------
@pytest.mark.parametrize("url, redacted", [
    ("http://alice:pw@host", "http://***@host"),
    ("https://alice:pw@host:8443/p/a?q=1#f", "https://***@host:8443/p/a?q=1#f"),
    ("http://token@localhost:8787/?v=2", "http://***@localhost:8787/?v=2"),
    ("http://a%40b:p%3Aw@[::1]:80/", "http://***@[::1]:80/"),
    ("http://a@b:c@host/", "http://***@host/"),
    ("socks5h://u:p@proxy:1080", "socks5h://***@proxy:1080"),
    ("https://chat.test/x@y", "https://chat.test/x@y"),
    ("https://chat.test", "https://chat.test"),
    ("not a url", "not a url"),
])
def test_redact_url_replaces_the_userinfo_only(url, redacted):
    assert redact_url(url) == redacted
    assert without_userinfo(url) == redacted.replace("//***@", "//")


def test_a_registered_secret_is_hidden_in_every_form_a_body_may_echo():
    holder, secret = Holder(), "s3cr/et+value=" + secrets.token_hex(8)
    register_secret(holder, secret)
    for written in (secret, json.dumps(secret)[1:-1].replace("/", "\\/"), "s3cr%2Fet%2Bvalue%3D" + secret[14:],
                    "s3cr%2Fet%2Bvalue%3D" + secret[14:]):
        assert redact_text(f"echo: {written} end") == "echo: *** end"
    assert redact_text("cut: " + secret[:9]) == "cut: ***"  # a secret cut before it got here
    assert redact_text("s3cr/et") == "s3cr/et"  # under 8 characters of its beginning: an ordinary word


def test_a_secret_is_forgotten_with_its_owner():
    holder, secret = Holder(), "owned-" + secrets.token_hex(8)
    register_secret(holder, secret)
    assert redact_text(secret) == "***"
    del holder
    gc.collect()
    assert redact_text(secret) == secret


def test_short_or_empty_secrets_are_not_searched_for_in_free_text():
    holder = Holder()
    for value in (None, "", "   ", "pw"):
        register_secret(holder, value)
    assert redact_text("pw and words") == "pw and words"


def test_register_url_registers_every_part_of_the_userinfo():
    holder, password = Holder(), "p@ss-" + secrets.token_hex(6)
    register_url(holder, f"http://someone:{password.replace('@', '%40')}@host/")
    assert redact_text(f"user someone, password {password}") == "user ***, password ***"
    register_url(holder, "http://host-without-userinfo/")  # nothing to register: no error


def test_any_url_userinfo_and_bearer_value_is_hidden_even_unregistered():
    assert redact_text("to http://bob:x@proxy:3128/ with Bearer abc.def") == "to http://***@proxy:3128/ with Bearer ***"


def test_every_logging_call_is_redacted_whatever_the_handler(caplog):
    holder, secret = Holder(), "logged-" + secrets.token_hex(12)
    register_secret(holder, secret)
    caplog.set_level(logging.DEBUG, logger="fakegpt")
    logger = logging.getLogger("fakegpt")
    logger.debug("token %s here", secret)
    logger.info("as a format %r", {"accessToken": secret})
    try:
        raise ValueError(f"failed with {secret}")
    except ValueError:
        logger.exception("an exception")
    logging.getLogger("fakegpt.emulator").warning("child logger: %s", secret)
    texts = [logging.Formatter().format(record) for record in caplog.records]
    assert len(texts) == 4 and all(secret[:8] not in text for text in texts)
    assert "token *** here" in texts[0] and "failed with ***" in texts[2]


def test_any_8_characters_of_a_secret_in_any_letter_case_are_hidden():
    holder, secret = Holder(), "Tok-" + secrets.token_urlsafe(30)
    register_secret(holder, secret)
    for written in (secret[-12:], secret[5:13], secret.upper(), secret.lower()[3:], secret.swapcase()):
        assert redact_text(f"echo [{written}] end") == "echo [***] end", written
    assert redact_text(f"two {secret[:8]} and {secret[-9:].upper()}") == "two *** and ***"
    assert redact_text(secret[:7]) == secret[:7]  # 7 characters of it: an ordinary word


def test_basic_credentials_and_their_base64_form_are_hidden():
    assert redact_text("Authorization: Basic YWxpY2U6cHctMTIzNDU2Nzg=") == "Authorization: Basic ***"
    assert redact_text("proxy-authorization: basic Ym9iOnNlY3JldA==") == "proxy-authorization: basic ***"
    assert redact_text("Basic usage and basic types") == "Basic usage and basic types"
    holder, password = Holder(), "pw-" + secrets.token_hex(8)
    register_url(holder, f"http://alice:{password}@proxy:3128")
    encoded = base64.b64encode(f"alice:{password}".encode()).decode()
    assert redact_text(f"you sent {encoded}.") == "you sent ***."


@pytest.mark.parametrize("url", ["alice:pw-secret-1@host", "alice:pw-secret-1@host:8080/path", "alice@host"])
def test_a_url_without_a_scheme_has_its_userinfo_hidden(url):
    assert redact_url(url).startswith("***@host")
    with pytest.raises(ValueError) as info:
        fakegpt.Client(url)
    assert "alice" not in str(info.value) and "pw-secret" not in str(info.value)


def test_urllib3s_header_parsing_warning_shows_no_token(caplog):
    """urllib3 logs a response's malformed headers as they came ("unparsed data"): a server echoing the token there."""
    caplog.set_level(logging.WARNING)  # what logging.basicConfig() shows
    token = "tok-" + secrets.token_urlsafe(40)
    reply = (f"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
             f"this line has no colon: Bearer-less echo {token}\r\nContent-Length: 2\r\n\r\n{{}}").encode()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve():
            conn, _ = listener.accept()
            with conn:
                read_request(conn)
                conn.sendall(reply)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with fakegpt.Client(f"http://127.0.0.1:{listener.getsockname()[1]}", access_token=token,
                            max_retries=0) as client:
            with pytest.raises(fakegpt.AuthenticationError) as info:
                client.complete(MESSAGES)
        thread.join(10)
    texts = [logging.Formatter().format(record) for record in caplog.records] + error_texts(info.value)
    assert any("Failed to parse headers" in text for text in texts)  # the warning was logged...
    assert not any(token[-8:].lower() in text.lower() for text in texts)  # ...without the token


def test_a_407_page_echoing_the_proxy_credentials_shows_them_nowhere(scan):
    password = "proxy-pw-" + secrets.token_hex(6)
    encoded = base64.b64encode(f"alice:{password}".encode()).decode()
    SECRETS["proxy credentials"] = encoded
    try:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            def serve():
                conn, _ = listener.accept()
                with conn:
                    head = read_request(conn).decode("latin-1")
                    sent = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                                if line.lower().startswith("proxy-authorization:"))
                    body = f"<h1>Denied</h1><p>you sent {sent}; credentials={sent.split()[-1]}</p>".encode()
                    conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Type: text/html\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            proxy = f"http://alice:{password}@127.0.0.1:{listener.getsockname()[1]}"
            with fakegpt.Client("http://chat.test", proxy=proxy, access_token=TOKEN, max_retries=0) as client:
                with pytest.raises(fakegpt.FakeGptError) as info:
                    client.complete(MESSAGES)
                scan(info.value, repr(client))
            thread.join(10)
        assert "407" in str(info.value)
        scan.check()
    finally:
        del SECRETS["proxy credentials"]


# -- the scan ------------------------------------------------------------------------------------
TOKEN = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + secrets.token_urlsafe(720)  # JWT-sized: ~1,000 characters
PASSWORD = "pw-" + secrets.token_urlsafe(18)
URL_PASSWORD = "url-" + secrets.token_urlsafe(12)
SECRETS = {"access token": TOKEN, "session password": PASSWORD, "URL password": URL_PASSWORD}


def leaks(texts):
    """(what, text) for every text showing 8 characters in a row of a secret."""
    found = []
    for text in texts:
        for what, secret in SECRETS.items():
            lowered = text.lower()
            if any(secret[i:i + 8].lower() in lowered for i in range(len(secret) - 7)):
                found.append((what, text[:200]))
    return found


def error_texts(error):
    """What a user can see of *error*: message, repr, traceback, every chained exception."""
    texts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts += [str(error), repr(error), str(getattr(error, "detail", "")), repr(vars(error))]
        error = error.__cause__ or error.__context__
    return texts


@pytest.fixture
def scan(caplog):
    """Collect what a scenario shows: call ``scan(error_or_text, ...)``, then ``scan.check()``."""
    caplog.set_level(logging.DEBUG, logger="fakegpt")

    class Scan(list):
        def __call__(self, *things):
            for thing in things:
                self.extend(error_texts(thing) if isinstance(thing, BaseException) else [str(thing)])

        def check(self, record=()):
            self.extend(str(w.message) for w in record)
            self.extend(logging.Formatter().format(r) for r in caplog.records)
            assert caplog.records or record or self, "nothing was scanned"
            assert leaks(self) == []

    return Scan()


def logged_in(server, token=TOKEN):
    server.loads()
    server.login()
    server.session(body={"user": {}, "expires": "2099-01-01T00:00:00Z", "accessToken": token})


def echoing(status, text):
    return {"status": status, "body": text.replace("{TOKEN}", TOKEN).replace("{PASSWORD}", PASSWORD)
            .replace("{TOKEN_UPPER}", TOKEN.upper()).replace("{TOKEN_END}", TOKEN[-12:])}


def conversation_failure(status, text):
    def arrange(server):
        logged_in(server)
        server.rsps.post(f"{BASE}/api/conversation", content_type="application/json", **echoing(status, text))
    return arrange


def in_stream_error(server):
    logged_in(server)
    server.conversation(sse(assistant("Part"), {"message": None, "conversation_id": "c1",
                                                "error": f"upstream refused the token {TOKEN} (expired)"}))


def not_an_event_stream(server):
    logged_in(server)
    server.conversation(b"error: the token " + TOKEN.encode() + b" is not valid\n", content_type="text/event-stream")


def dead_tokens_echoing_the_form(server):
    server.loads()
    server.rsps.post(f"{BASE}/auth/login", status=400, content_type="text/plain",
                     body=f"Error 400: bad form token_key={TOKENS[0]}&session_password={PASSWORD} " + "x" * 300)


def login_failing_with_an_echo(server):
    server.loads()
    server.rsps.post(f"{BASE}/auth/login", status=500, json={"detail": f"cannot log in session_password={PASSWORD}"})


def token_list_echoing(server):
    server.rsps.get(f"{BASE}/api/loads", status=403, content_type="text/html",
                    body=f"<html><title>Denied for {PASSWORD}</title><body>{TOKEN}</body></html>")


SCENARIOS = {
    "expired token (401)": conversation_failure(
        401, '{"detail": {"code": "token_expired", "message": "The token {TOKEN} has expired."}}'),
    "rejected token (403)": conversation_failure(403, '{"detail": "token {TOKEN} is not allowed here"}'),
    "server error (500) echoing the token": conversation_failure(500, "upstream: Authorization: Bearer {TOKEN}"),
    "rate limit echoing the token": conversation_failure(429, '{"detail": "Too many requests for {TOKEN}"}'),
    "server error echoing the token upper-cased": conversation_failure(500, "token: {TOKEN_UPPER}"),
    "server error echoing the token's last 12 characters": conversation_failure(500, "token ...{TOKEN_END}"),
    "in-stream error echoing the token": in_stream_error,
    "a body that is not an event stream": not_an_event_stream,
    "dead tokens, the login echoing the form": dead_tokens_echoing_the_form,
    "login server error echoing the password": login_failing_with_an_echo,
    "token list page echoing both": token_list_echoing,
}


@pytest.mark.parametrize("arrange", SCENARIOS.values(), ids=list(SCENARIOS))
def test_no_secret_shows_in_any_failure(server, scan, arrange):
    arrange(server)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with fakegpt.Client(BASE, session_password=PASSWORD, max_retries=1) as client:
            client._sleep = lambda seconds: None
            with pytest.raises(fakegpt.FakeGptError) as info:
                client.complete(MESSAGES)
            scan(info.value, repr(client), repr(info.value.partial_text))
    scan.check(record)


def test_a_given_token_rejected_with_an_echo_shows_nowhere(server, scan):
    server.rsps.post(f"{BASE}/api/conversation", status=401, json={"detail": f"bad token {TOKEN}"})
    with fakegpt.Client(BASE, access_token=TOKEN, session_password=PASSWORD) as client:
        with pytest.raises(fakegpt.AuthenticationError) as info:
            client.complete(MESSAGES)
        scan(info.value, repr(client))
    scan.check()


def test_a_cached_token_echoed_then_a_failing_login_shows_nowhere(server, scan, tmp_path):
    path = tmp_path / "sessions.json"
    SessionCache(path).save(BASE, TOKEN, requests.cookies.RequestsCookieJar(), PASSWORD)
    server.rsps.post(f"{BASE}/api/conversation", status=401, json={"detail": f"expired: {TOKEN}"})
    dead_tokens_echoing_the_form(server)
    with fakegpt.Client(BASE, session_cache=path) as client:
        client._sleep = lambda seconds: None
        with pytest.raises(fakegpt.AuthenticationError) as info:
            client.complete(MESSAGES)
        scan(info.value, repr(client), repr(SessionCache(path)))
    scan.check()


@pytest.mark.parametrize("entry", [
    {"access_token": TOKEN + "\r\nX-Evil: 1", "session_password": PASSWORD},
    {"access_token": TOKEN, "session_password": PASSWORD + " \t", "cookies": [{"name": "credential", "value": TOKEN}]},
    {"access_token": TOKEN, "cookies": [{"name": "credential", "value": TOKEN + "\n"}]},
    {"access_token": TOKEN, "cookies": [{"name": f"bad name {PASSWORD}", "value": "x"}]},
], ids=["token-with-crlf", "password-with-spaces", "cookie-with-newline", "cookie-name"])
def test_a_hostile_cache_entry_is_reported_without_its_secrets(fakegpt_emulator, scan, tmp_path, entry):
    path = tmp_path / "cache" / "sessions.json"
    path.parent.mkdir(mode=0o700)
    path.write_text(json.dumps({"format": "fakegpt-session-cache/1", "sessions": {fakegpt_emulator.url: entry}}))
    os.chmod(path, 0o600)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with fakegpt.Client(fakegpt_emulator.url, session_cache=path) as client:
            assert client.complete(MESSAGES).startswith("Hello!")
            scan(repr(client))
    assert any(w.category is fakegpt.SessionCacheWarning for w in record)
    scan.check(record)


def test_dead_tokens_on_the_emulator_leave_no_secret_in_the_debug_log(scan):
    with Emulator(tokens=0) as emulator:
        for _ in range(6):
            emulator.add_token(dead="login")
        emulator.add_token(dead="session")
        emulator.add_token(count=9)
        with fakegpt.Client(emulator.url, session_password=PASSWORD) as client:
            assert client.complete(MESSAGES).startswith("Hello!")
            SECRETS["emulator token"] = client.access_token
            try:
                emulator.expire_access_tokens()
                emulator.kill_token()
                with pytest.raises(fakegpt.AuthenticationError) as info:
                    client.complete(MESSAGES)
                scan(info.value, repr(client))
                scan.check()
            finally:
                del SECRETS["emulator token"]


# -- what needs the client's own redaction ------------------------------------------------------
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_url_credentials_show_nowhere(scan):
    url = f"http://alice:{URL_PASSWORD}@127.0.0.1:{closed_port()}"
    with fakegpt.Client(url, session_password=PASSWORD, max_retries=1) as client:
        client._sleep = lambda seconds: None
        with pytest.raises(fakegpt.APIConnectionError) as info:
            client.complete(MESSAGES)
        scan(info.value, repr(client))
    scan.check()


def test_url_credentials_never_go_in_the_referer(fakegpt_emulator):
    url = fakegpt_emulator.url.replace("http://", f"http://alice:{URL_PASSWORD}@")
    with fakegpt.Client(url, session_password=PASSWORD) as client:
        try:
            client.complete(MESSAGES)
        except fakegpt.FakeGptError:
            pass  # whether the server accepts the call is not the point here
    referers = [r.headers.get("Referer", "") for r in fakegpt_emulator.requests]
    assert referers and leaks(referers) == []


def test_url_credentials_are_sent_as_basic_auth_on_every_request(fakegpt_emulator, scan, caplog):
    caplog.set_level(logging.DEBUG)
    url = fakegpt_emulator.url.replace("http://", f"http://alice:{URL_PASSWORD}@")
    basic = "Basic " + base64.b64encode(f"alice:{URL_PASSWORD}".encode()).decode()
    with fakegpt.Client(url, session_password=PASSWORD) as client:
        assert client.complete(MESSAGES).startswith("Hello!")
        scan(repr(client), client.base_url)
    sent = fakegpt_emulator.requests
    assert [r.path.split("?")[0] for r in sent] == ["/api/loads", "/auth/login", "/api/auth/session",
                                                    "/api/conversation"]
    assert all(r.headers.get("Authorization") == basic for r in sent)
    assert sent[-1].headers["X-Authorization"].startswith("Bearer emu-")  # the token, where the protocol reads it
    SECRETS["basic credentials"] = basic.split()[1]
    try:
        scan.check()
    finally:
        del SECRETS["basic credentials"]


def test_an_access_token_with_a_newline_is_stripped_or_refused_before_any_request(server, scan):
    server.conversation()
    try:
        client = fakegpt.Client(BASE, access_token=TOKEN + "\n")
    except ValueError as error:  # refused: fine, if it does not print the value
        scan(error)
        scan.check()
        assert server.rsps.calls == []
        return
    with client:
        client._sleep = lambda seconds: None
        assert client.complete(MESSAGES) == "Hello world"  # stripped: one call, not retried
    assert [c.request.headers["X-Authorization"] for c in server.rsps.calls] == [f"Bearer {TOKEN}"]
