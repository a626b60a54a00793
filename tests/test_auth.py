"""The shared-token login, against a mocked server (`responses`)."""
import re
import time
from urllib.parse import parse_qs

import pytest
import requests

import fakegpt
from fakegpt._auth import AccessToken, new_session_password

from .conftest import ACCESS, MESSAGES, TOKENS, at_once


def test_login_flow_then_conversation(server, client):
    server.logged_in()
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world"
    assert server.paths() == ["/api/loads", "/auth/login", "/api/auth/session", "/api/conversation"]
    loads = server.rsps.calls[0].request
    assert re.fullmatch(r"/api/loads\?t=\d{10}", loads.path_url)
    form = parse_qs(server.rsps.calls[1].request.body)
    assert form["token_key"][0] in TOKENS
    assert re.fullmatch(r"[A-Za-z0-9]{10}", form["session_password"][0])
    for call in server.rsps.calls:
        headers = call.request.headers
        assert headers["Accept-Language"] == "en-US" and "Chrome/" in headers["User-Agent"]
        assert headers["Referer"] == "https://chat.test/?v=2" and headers["sec-ch-ua-mobile"] == "?0"
    assert server.rsps.calls[3].request.headers["X-Authorization"] == f"Bearer {ACCESS}"
    assert client.access_token == ACCESS


def test_login_is_done_once_and_reused(server, client):
    server.logged_in()
    server.conversation()
    client.complete(MESSAGES)
    client.complete(MESSAGES)
    assert server.paths().count("/auth/login") == 1 and server.paths().count("/api/conversation") == 2


def test_least_busy_token_first(server, client):
    server.loads(counts=[9, 1, 5])
    server.login()
    server.session()
    server.conversation()
    client.complete(MESSAGES)
    assert server.login_tokens() == [TOKENS[1]]


def test_fixed_session_password_is_sent(server):
    server.logged_in()
    server.conversation()
    with fakegpt.Client("https://chat.test", session_password="my-history") as client:
        client.complete(MESSAGES)
    assert parse_qs(server.calls("/auth/login")[0].request.body)["session_password"] == ["my-history"]


def test_generated_session_passwords_differ():
    assert len({new_session_password() for _ in range(50)}) == 50


def test_empty_token_list(server, client):
    server.loads(tokens=[])
    with pytest.raises(fakegpt.AuthenticationError, match="token list .* is empty") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.AuthenticationError
    assert server.paths() == ["/api/loads"] and client.waits == []


def test_challenge_page_is_a_status_error_not_a_json_crash(server, client):
    server.rsps.get("https://chat.test/api/loads", status=403, content_type="text/html",
                    body="<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>cf</body></html>")
    with pytest.raises(fakegpt.APIStatusError, match=r"GET /api/loads failed: HTTP 403: HTML page: Just a moment") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.APIStatusError and info.value.status_code == 403
    assert server.paths() == ["/api/loads"]  # a 403 is not retried


def test_html_with_200_is_a_status_error(server, client):
    server.rsps.get("https://chat.test/api/loads", status=200, content_type="text/html",
                    body="<html><title>Just a moment...</title></html>")
    with pytest.raises(fakegpt.APIStatusError, match="not JSON: HTML page: Just a moment"):
        client.complete(MESSAGES)


@pytest.mark.parametrize("body", [{"tokens": []}, {"loads": "nope"}, [1, 2]])
def test_token_list_missing(server, client, body):
    server.rsps.get("https://chat.test/api/loads", json=body)
    with pytest.raises(fakegpt.AuthenticationError, match="without a token list"):
        client.complete(MESSAGES)


def test_malformed_entries_are_skipped(server, client):
    server.rsps.get("https://chat.test/api/loads",
                    json={"loads": [{"count": 1}, {"token_id": 5}, "x", {"token_id": TOKENS[2], "count": "busy"}]})
    server.login()
    server.session()
    server.conversation()
    client.complete(MESSAGES)
    assert server.login_tokens() == [TOKENS[2]]


def test_dead_tokens_are_skipped_each_tried_once(server, client):
    server.loads(counts=[0, 1, 2])
    server.rsps.post("https://chat.test/auth/login", status=400, json={"detail": "Error 400: invalid token"})
    server.rsps.post("https://chat.test/auth/login", status=403, body="forbidden")
    server.login()
    server.session()
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world"
    assert server.login_tokens() == TOKENS  # in order of load, no token twice
    assert client.waits == []  # token rotation does not back off


def test_every_token_dead(server, client):
    server.loads()
    server.login(status=400, json={"detail": "Error 400"})
    with pytest.raises(fakegpt.AuthenticationError) as info:
        client.complete(MESSAGES)
    message = str(info.value)
    assert "all 3 tokens tried were rejected" in message and "login rejected (HTTP 400: Error 400)" in message
    assert sorted(server.login_tokens()) == sorted(TOKENS)
    assert "/api/conversation" not in server.paths()


def test_every_listed_token_is_tried_once_before_giving_up(server, client):
    many = [f"{i:032x}" for i in range(12)]
    server.loads(tokens=many)
    server.login(status=400)
    with pytest.raises(fakegpt.AuthenticationError, match="all 12 tokens tried were rejected"):
        client.complete(MESSAGES)
    assert sorted(server.login_tokens()) == many  # each once


@pytest.mark.parametrize(
    "session_answer, reason",
    [
        ({}, r"empty session \(\{\}\)"),
        ({"accessToken": ""}, "empty session"),
        ({"accessToken": 42}, "empty session"),
    ],
)
def test_empty_session_means_a_dead_token(server, client, session_answer, reason):
    server.loads(tokens=TOKENS[:2])
    server.login()
    server.session(body=session_answer)
    with pytest.raises(fakegpt.AuthenticationError, match=reason):
        client.complete(MESSAGES)
    assert server.paths().count("/api/auth/session") == 2


def test_session_not_json_or_refused(server, client):
    server.loads(tokens=TOKENS[:2])
    server.login()
    server.rsps.get("https://chat.test/api/auth/session", body="<html>oops</html>", content_type="text/html")
    server.rsps.get("https://chat.test/api/auth/session", status=401, json={})
    with pytest.raises(fakegpt.AuthenticationError, match="not JSON.*session refused \\(HTTP 401\\)"):
        client.complete(MESSAGES)


def test_transient_failures_during_login_are_retried(server, client):
    server.rsps.get("https://chat.test/api/loads", status=502, body="bad gateway")
    server.rsps.get("https://chat.test/api/loads", body=requests.exceptions.ConnectionError("reset"))
    server.logged_in()
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world"
    assert server.paths()[:3] == ["/api/loads"] * 3 and len(client.waits) == 2


def test_a_5xx_at_the_login_of_one_token_moves_on_to_the_next(server, client):
    server.loads(counts=[0, 1, 2])
    for _ in range(3):  # the first try and max_retries=2 retries, all for the least busy token
        server.rsps.post("https://chat.test/auth/login", status=502, body="bad gateway")
    server.login()
    server.session()
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world"
    assert server.login_tokens() == [TOKENS[0]] * 3 + [TOKENS[1]] and len(client.waits) == 2


def test_a_timeout_at_the_session_of_one_token_moves_on_to_the_next(server, client):
    server.loads(counts=[0, 1, 2])
    server.login()
    for _ in range(3):
        server.rsps.get("https://chat.test/api/auth/session", body=requests.exceptions.ReadTimeout("slow"))
    server.session()
    server.conversation()
    assert client.complete(MESSAGES) == "Hello world"
    assert server.login_tokens() == TOKENS[:2] and len(server.calls("/api/auth/session")) == 4


def test_when_every_token_fails_with_a_5xx_that_5xx_is_raised(server, client):
    server.loads(tokens=TOKENS[:2], counts=[0, 1])
    server.rsps.post("https://chat.test/auth/login", status=503, body="maintenance")
    with pytest.raises(fakegpt.APIStatusError, match="HTTP 503: maintenance") as info:
        client.complete(MESSAGES)
    assert info.value.status_code == 503 and server.login_tokens() == [TOKENS[0]] * 3 + [TOKENS[1]] * 3
    assert "/api/conversation" not in server.paths()


def test_rejected_and_failing_tokens_give_one_authentication_error_naming_both(server, client):
    server.loads(tokens=TOKENS[:2], counts=[0, 1])
    server.rsps.post("https://chat.test/auth/login", status=400, json={"detail": "Error 400"})
    server.rsps.post("https://chat.test/auth/login", status=500, body="oops")
    with pytest.raises(fakegpt.AuthenticationError, match=r"all 2 tokens tried failed \(.*HTTP 400.*HTTP 500: oops"):
        client.complete(MESSAGES)
    assert server.login_tokens() == [TOKENS[0]] + [TOKENS[1]] * 3


def test_login_connection_failure_after_retries(server, client):
    server.rsps.get("https://chat.test/api/loads", body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(fakegpt.APIConnectionError, match="GET /api/loads to chat.test failed: refused") as info:
        client.complete(MESSAGES)
    assert type(info.value) is fakegpt.APIConnectionError
    assert len(server.calls("/api/loads")) == 3 and len(client.waits) == 2


def test_login_rate_limited(server, client):
    server.rsps.get("https://chat.test/api/loads", status=429, json={"detail": "Too many requests"},
                    headers={"Retry-After": "1"})
    with pytest.raises(fakegpt.RateLimitError) as info:
        client.complete(MESSAGES)
    assert info.value.retry_after == 1.0 and client.waits == [1.0, 1.0]


def test_access_token_holder_logs_in_once_and_only_invalidates_its_own_token():
    tokens = iter(["t1", "t2"])
    holder = AccessToken(lambda: next(tokens))
    assert holder.get() == "t1" and holder.get() == "t1" and holder.logins == 1
    holder.invalidate("stale")
    assert holder.current == "t1"
    holder.invalidate("t1")
    assert holder.current is None and holder.get() == "t2" and holder.logins == 2


def test_access_token_without_login():
    holder = AccessToken(None, None)
    with pytest.raises(fakegpt.AuthenticationError, match="logging in is disabled"):
        holder.get()


@pytest.mark.parametrize("base", ["http://localhost:8787", "http://127.0.0.1:8787", "http://chat.lan"])
@pytest.mark.parametrize("attributes", ["; Secure; HttpOnly", "; Domain=localhost", "; Domain=elsewhere.test", ""])
def test_login_cookie_is_sent_back_even_when_the_jar_would_refuse_it(base, attributes):
    import responses as responses_lib

    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{base}/api/loads", json={"loads": [{"token_id": TOKENS[0], "count": 0}]})
        rsps.post(f"{base}/auth/login", status=302,
                  headers={"Location": "/", "Set-Cookie": f"credential=c-123; Path=/{attributes}"})
        rsps.get(f"{base}/api/auth/session", json={"accessToken": ACCESS})
        rsps.post(f"{base}/api/conversation", body=b'data: {"message": {"id": "m", "author": {"role": "assistant"}, '
                  b'"content": {"parts": ["ok"]}, "status": "finished_successfully"}}\n\ndata: [DONE]\n\n',
                  content_type="text/event-stream")
        with fakegpt.Client(base) as client:
            assert client.complete(MESSAGES) == "ok"
        session_call = [c for c in rsps.calls if c.request.path_url == "/api/auth/session"][0]
        assert session_call.request.headers.get("Cookie") == "credential=c-123"


def test_a_failed_login_is_shared_by_every_waiting_thread_not_repeated(server):

    def slow_failure(request):
        time.sleep(0.3)  # long enough for every thread to be waiting on this login
        return (503, {}, "down")

    server.rsps.add_callback("GET", "https://chat.test/api/loads", callback=slow_failure)
    with fakegpt.Client("https://chat.test", max_retries=1) as client:
        client._sleep = lambda seconds: None
        errors = at_once(lambda i: client.complete(MESSAGES), 8)
    assert len(errors) == 8 and all(type(e) is fakegpt.APIStatusError for e in errors)
    assert len({id(e) for e in errors}) == 8  # each thread raises its own copy
    assert len(server.calls("/api/loads")) == 2  # one login round (a try and a retry), not eight
    assert client._token.logins == 1


def test_an_aborted_call_does_not_wait_for_or_start_a_login(server):
    import threading

    entered, release = threading.Event(), threading.Event()

    def slow_loads(request):
        entered.set()
        release.wait(5)
        return (200, {}, '{"loads": [{"token_id": "%s", "count": 0}]}' % TOKENS[0])

    server.rsps.add_callback("GET", "https://chat.test/api/loads", callback=slow_loads)
    server.login()
    server.session()
    server.conversation()
    with fakegpt.Client("https://chat.test") as client:
        leader = threading.Thread(target=lambda: client.complete(MESSAGES))
        leader.start()
        assert entered.wait(5)
        stream = client.stream(MESSAGES)
        outcome = []
        waiter = threading.Thread(target=lambda: outcome.append(list(stream)))
        waiter.start()
        stream.abort()
        waiter.join(10)  # the login it waits for is held until release is set, below
        assert not waiter.is_alive() and outcome == [[]]  # gave up quietly when aborted
        release.set()
        leader.join(5)
    assert len(server.calls("/api/loads")) == 1 and len(server.calls("/api/conversation")) == 1


@pytest.mark.parametrize("error", [
    fakegpt.APIStatusError("x", status_code=500, detail="d"),
    fakegpt.RateLimitError("r", status_code=429, retry_after=2.0),
    fakegpt.AuthenticationError("a", status_code=401),
    fakegpt.IncompleteStreamError("i", partial_text="so far"),
])
def test_errors_pickle_and_copy_with_their_attributes(error):
    import copy
    import pickle

    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error) and str(clone) == str(error) and vars(clone) == vars(error)


def test_a_given_session_password_always_picks_the_same_account(server):
    """History lives under (account, password): with a fixed password, the login returns to the same account."""
    many = [f"{i:032x}" for i in range(8)]
    chosen = set()
    for counts in ([0] * 8, list(range(8)), list(range(8))[::-1]):
        server.rsps.reset()
        server.loads(tokens=many if counts[0] == 0 else many[::-1], counts=counts)
        server.login()
        server.session()
        server.conversation()
        with fakegpt.Client("https://chat.test", session_password="my-history") as client:
            client.complete(MESSAGES)
        chosen.add(server.login_tokens()[0])
    assert len(chosen) == 1  # whatever the order and the load


def test_different_passwords_spread_over_the_accounts(server):
    many = [f"{i:032x}" for i in range(8)]
    chosen = set()
    for n in range(12):
        server.rsps.reset()
        server.loads(tokens=many)
        server.login()
        server.session()
        server.conversation()
        with fakegpt.Client("https://chat.test", session_password=f"user-{n}") as client:
            client.complete(MESSAGES)
        chosen.add(server.login_tokens()[0])
    assert len(chosen) >= 3


# -- rotation: a usable token is found whenever one is listed ------------------------
def recording_send(session, calls, base="https://chat.test"):
    """A ``send`` like the client's (over `responses`), recording every call's keywords."""
    from fakegpt.exceptions import error_for_status

    def send(method, path, *, what, passthrough=(), **kwargs):
        calls.append((method, path, dict(kwargs)))
        response = session.request(method, base + path, **kwargs)
        if response.status_code >= 400 and response.status_code not in passthrough:
            raise error_for_status(response.status_code, response.content, what=what)
        return response

    return send


def accounts(server, dead, alive, counts=None):
    """List *dead* + *alive* tokens; logins with a dead one are rejected (400)."""
    tokens = list(dead) + list(alive)
    server.loads(tokens=tokens, counts=counts or [0] * len(dead) + [7] * len(alive))

    def login(request):
        token = parse_qs(request.body)["token_key"][0]
        if token in dead:
            return (400, {}, '{"detail": "Error 400: invalid token_key"}')
        return (302, {"Location": "/?v=2", "Set-Cookie": "credential=c; Path=/"}, "")

    server.rsps.add_callback("POST", "https://chat.test/auth/login", callback=login)
    server.session()
    server.conversation()


DEAD = [f"{i:032x}" for i in range(7)]
ALIVE = ["f" * 32]


def password_ranking_last(token, others):
    """A session password whose stable order puts *token* after all of *others*."""
    import hashlib

    def rank(password, token_id):
        return hashlib.sha256(f"{password}\0{token_id}".encode()).digest()

    return next(p for p in (f"pw-{n}" for n in range(10_000))
                if all(rank(p, token) > rank(p, other) for other in others))


WORST = password_ranking_last(ALIVE[0], DEAD)


def test_dead_tokens_looking_least_busy_do_not_hide_a_live_one(server, client):
    accounts(server, DEAD, ALIVE)
    assert client.complete(MESSAGES) == "Hello world"
    assert server.login_tokens()[-1] == ALIVE[0] and sorted(server.login_tokens()[:-1]) == DEAD
    assert client.waits == []


def test_a_chosen_password_finds_the_live_token_and_the_next_login_skips_the_dead(server):
    accounts(server, DEAD, ALIVE)
    server.rsps.post("https://chat.test/api/conversation", status=401, json={"detail": "expired"})
    server.conversation()
    with fakegpt.Client("https://chat.test", session_password=WORST) as client:
        assert client.complete(MESSAGES) == "Hello world"  # logged in once, after every dead token...
        assert server.login_tokens() == sorted(DEAD, key=lambda t: server.login_tokens().index(t)) + ALIVE
        assert client.complete(MESSAGES) == "Hello world"  # ...and again after the 401
    assert server.login_tokens()[len(DEAD) + 1:] == ALIVE  # the dead ones, remembered, came last: not tried


def test_remembered_dead_tokens_are_tried_last_and_forgotten_when_they_work(server):
    from fakegpt._auth import DeadTokens, SharedTokenLogin

    server.loads(tokens=TOKENS)
    server.login()
    server.session()
    calls = []
    memory = DeadTokens()
    memory.update([TOKENS[0], TOKENS[1]])
    login = SharedTokenLogin(recording_send(requests.Session(), calls), requests.Session(), "pw-12345",
                             dead_tokens=memory)
    assert login() == ACCESS and server.login_tokens() == [TOKENS[2]]
    server.rsps.reset()
    server.loads(tokens=TOKENS[:2])  # only the remembered ones are listed: still tried, and one works
    server.login()
    server.session()
    assert login() == ACCESS and memory.known() == {TOKENS[0], TOKENS[1]} - {server.login_tokens()[0]}


def test_dead_tokens_are_remembered_for_a_while_only():
    from fakegpt._auth import DeadTokens
    from fakegpt._constants import DEAD_TOKEN_TTL

    now = [1000.0]
    memory = DeadTokens(clock=lambda: now[0])
    memory.update(["a" * 32], revived=[])
    assert memory.known() == {"a" * 32}
    now[0] += DEAD_TOKEN_TTL - 1
    assert memory.known() == {"a" * 32}
    now[0] += 2
    assert memory.known() == set()


def test_dead_tokens_are_shared_through_the_session_cache(tmp_path, server):
    from fakegpt._auth import DeadTokens
    from fakegpt._cache import SessionCache

    cache = SessionCache(tmp_path / "sessions.json")
    DeadTokens(cache, "https://chat.test").update(["a" * 32, "b" * 32])
    other = DeadTokens(SessionCache(tmp_path / "sessions.json"), "https://chat.test")  # another process
    assert other.known() == {"a" * 32, "b" * 32}
    other.update([], revived=["a" * 32])
    assert DeadTokens(cache, "https://chat.test").known() == {"b" * 32}
    assert DeadTokens(cache, "https://other.test").known() == set()


def test_a_new_client_sharing_the_cache_skips_the_dead_tokens(tmp_path, server):
    from fakegpt._cache import SessionCache

    accounts(server, DEAD, ALIVE)
    cache = tmp_path / "sessions.json"
    with fakegpt.Client("https://chat.test", session_cache=cache, session_password=WORST) as client:
        client.complete(MESSAGES)
    assert len(server.login_tokens()) == len(DEAD) + 1
    assert set(SessionCache(cache).dead_tokens("https://chat.test")) == set(DEAD)
    SessionCache(cache).save("https://chat.test", "stale", requests.cookies.RequestsCookieJar(), WORST)
    server.rsps.post("https://chat.test/api/conversation", status=401, json={"detail": "expired"})
    server.conversation()
    with fakegpt.Client("https://chat.test", session_cache=cache, session_password=WORST) as client:
        assert client.complete(MESSAGES) == "Hello world"  # its cached token is stale: a login
    assert server.login_tokens()[len(DEAD) + 1:] == ALIVE  # this process skipped what the other learnt
    assert set(SessionCache(cache).dead_tokens("https://chat.test")) == set(DEAD)  # kept by save()


def test_the_login_budget_stops_the_rotation_and_the_error_says_how_far_it_got(server):
    from fakegpt._auth import SharedTokenLogin

    server.loads(tokens=TOKENS)
    server.login(status=400, json={"detail": "Error 400"})
    calls = []
    login = SharedTokenLogin(recording_send(requests.Session(), calls), requests.Session(), "pw-12345", budget=0)
    with pytest.raises(fakegpt.AuthenticationError,
                       match=r"1 of 3 tokens tried were rejected before the 0 s login budget ran out") as info:
        login()
    assert type(info.value) is fakegpt.AuthenticationError and len(server.login_tokens()) == 1


def test_a_token_listed_twice_is_tried_once(server):
    from fakegpt._auth import SharedTokenLogin

    server.loads(tokens=[TOKENS[0], TOKENS[1], TOKENS[0]])
    server.login(status=400)
    login = SharedTokenLogin(recording_send(requests.Session(), []), requests.Session(), "pw-12345")
    with pytest.raises(fakegpt.AuthenticationError, match="all 2 tokens tried were rejected"):
        login()
    assert sorted(server.login_tokens()) == TOKENS[:2]


def test_a_server_wide_failure_during_the_rotation_is_raised_and_the_dead_are_kept(server):
    from fakegpt._auth import DeadTokens, SharedTokenLogin

    server.loads(tokens=TOKENS, counts=[0, 1, 2])
    server.rsps.post("https://chat.test/auth/login", status=400, json={"detail": "Error 400"})
    server.rsps.post("https://chat.test/auth/login", status=429, json={"detail": "Too many requests"})
    memory = DeadTokens()
    login = SharedTokenLogin(recording_send(requests.Session(), []), requests.Session(), "pw-12345",
                             dead_tokens=memory)
    with pytest.raises(fakegpt.RateLimitError):
        login()
    assert memory.known() == {TOKENS[0]} and server.login_tokens() == TOKENS[:2]


# -- timeouts ---------------------------------------------------------------------------
def test_every_login_request_carries_the_login_timeout(server):
    from fakegpt._auth import SharedTokenLogin
    from fakegpt._constants import LOGIN_TIMEOUT

    for timeout, expected in ((None, LOGIN_TIMEOUT), ((1.5, 4.0), (1.5, 4.0))):
        server.rsps.reset()
        server.loads(tokens=TOKENS[:2])
        server.rsps.post("https://chat.test/auth/login", status=400)
        server.login()
        server.session()
        calls = []
        options = {} if timeout is None else {"timeout": timeout}
        login = SharedTokenLogin(recording_send(requests.Session(), calls), requests.Session(), "pw-12345",
                                 **options)
        assert login() == ACCESS
        assert [path for _, path, _ in calls] == ["/api/loads", "/auth/login", "/auth/login", "/api/auth/session"]
        assert all(kwargs["timeout"] == expected for _, _, kwargs in calls)
    assert LOGIN_TIMEOUT == (10.0, 20.0)


# -- hostile answers -------------------------------------------------------------------
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("where", ["/api/loads", "/auth/login", "/api/auth/session"])
def test_json_nested_100000_deep_is_a_fakegpt_error_not_a_recursion_error(server, client, where):
    if where == "/api/loads":
        server.rsps.get("https://chat.test/api/loads", body=DEEP, status=200, content_type="application/json")
        error = fakegpt.APIStatusError
    else:
        server.loads(tokens=TOKENS[:1])
        if where == "/auth/login":
            server.login(status=400, body=DEEP, content_type="application/json")
        else:
            server.login()
            server.rsps.get("https://chat.test/api/auth/session", body=DEEP, content_type="application/json")
        error = fakegpt.AuthenticationError
    with pytest.raises(error) as info:
        client.complete(MESSAGES)
    assert type(info.value) is error and len(str(info.value)) <= 300
    assert not isinstance(info.value.__cause__, RecursionError) and not isinstance(info.value.__context__,
                                                                                   RecursionError)


def test_the_session_password_echoed_by_a_login_error_is_hidden(server, client, debug_log):
    server.loads(tokens=TOKENS[:1])
    server.rsps.post("https://chat.test/auth/login", status=400,
                     body="Error 400: bad form token_key=x&session_password=" + client._password + " " + "x" * 400)
    with pytest.raises(fakegpt.AuthenticationError) as info:
        client.complete(MESSAGES)
    assert "session_password=***" in str(info.value)
    for text in [str(info.value), repr(info.value)] + [r.getMessage() for r in debug_log.records]:
        assert client._password[:8] not in text
