"""The session cache: a login shared by processes, kept safe and whole."""
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import requests

import fakegpt
from fakegpt._cache import SessionCache, default_cache_path
from fakegpt.emulator import Emulator

from .conftest import at_once

HI = [{"role": "user", "content": "hi"}]


def jar(**values):
    cookies = requests.cookies.RequestsCookieJar()
    for name, value in values.items():
        cookies.set(name, value, domain="localhost.local", path="/")
    return cookies


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def paths(emulator, since=0):
    return [r.path.split("?")[0] for r in emulator.requests[since:]]


@pytest.fixture
def cache_path(tmp_path):
    return tmp_path / "cache" / "sessions.json"


# -- the file ---------------------------------------------------------------------------
def test_save_and_load_round_trip_with_private_modes(cache_path):
    cache = SessionCache(cache_path)
    assert cache.load("http://a") is None  # no file yet: nothing, and no warning
    cache.save("http://a", "token-a", jar(credential="cred-a"), "password-a")
    cache.save("http://b", "token-b", jar(), None)
    entry = cache.load("http://a")
    assert entry["access_token"] == "token-a" and entry["session_password"] == "password-a"
    assert {c.name: c.value for c in cache.cookies(entry)} == {"credential": "cred-a"}
    assert cache.load("http://b")["access_token"] == "token-b"  # the other server's entry was kept
    assert cache.load("http://c") is None
    assert mode(cache_path) == 0o600 and mode(cache_path.parent) == 0o700
    assert sorted(os.listdir(cache_path.parent)) == [".sessions.lock", "sessions.json"]  # no temporary file left


def test_repr_names_the_path_only(cache_path):
    cache = SessionCache(cache_path)
    cache.save("http://a", "token-SECRET", jar(), None)
    assert repr(cache) == f"<fakegpt SessionCache {str(cache_path)!r}>"


@pytest.mark.parametrize(
    "spoil, problem",
    [
        (lambda p: p.write_text("{not json"), "is not valid JSON"),
        (lambda p: p.write_text('{"sessions": {}}'), "is not a fakegpt session cache"),
        (lambda p: p.write_text("[1, 2]"), "is not a fakegpt session cache"),
        (lambda p: os.chmod(p, 0o644), "is open to other users (mode 644, expected 600)"),
        (lambda p: os.chown(p, 12345, -1), "belongs to another user"),
    ],
    ids=["corrupt", "foreign-format", "not-an-object", "mode-644", "foreign-owner"],
)
def test_an_untrusted_file_is_ignored_with_a_warning(cache_path, spoil, problem):
    cache = SessionCache(cache_path)
    cache.save("http://a", "token-a", jar(), None)
    if "chown" in spoil.__code__.co_names and os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    spoil(cache_path)
    with pytest.warns(fakegpt.SessionCacheWarning, match="ignoring the session cache .*: it " + problem.replace("(", r"\(").replace(")", r"\)")):
        assert cache.load("http://a") is None


def write_cache(path, sessions):
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(json.dumps({"format": "fakegpt-session-cache/1", "sessions": sessions}))
    os.chmod(path, 0o600)


GOOD_COOKIE = {"name": "credential", "value": "abc", "domain": "localhost.local", "path": "/", "secure": False,
               "expires": None}


@pytest.mark.parametrize("entry, problem", [
    ("junk", "not an object"),
    ({"access_token": 5}, "the access token is not a printable ASCII string"),
    ({"access_token": ""}, "the access token is not"),
    ({"access_token": "abc\r\nX-Evil: 1"}, "the access token is not"),
    ({"access_token": "tökén"}, "the access token is not"),
    ({"access_token": "t" * 20000}, "the access token is not"),
    ({"access_token": "token", "session_password": "   "}, "the session password is not"),
    ({"access_token": "token", "session_password": ["p"]}, "the session password is not"),
    ({"access_token": "token", "cookies": 5}, "the cookies are not a short list"),
    ({"access_token": "token", "cookies": [GOOD_COOKIE] * 65}, "the cookies are not a short list"),
    ({"access_token": "token", "cookies": [{"name": "a b"}]}, "a cookie has no valid name"),
    ({"access_token": "token", "cookies": [{**GOOD_COOKIE, "value": "x\r\ny"}]}, "a cookie's value is not valid"),
    ({"access_token": "token", "cookies": [{**GOOD_COOKIE, "value": "é"}]}, "a cookie's value is not valid"),
    ({"access_token": "token", "cookies": [{**GOOD_COOKIE, "value": 1}]}, "a cookie's value is not valid"),
    ({"access_token": "token", "cookies": [{**GOOD_COOKIE, "domain": "a b"}]}, "a cookie's domain is not valid"),
    ({"access_token": "token", "cookies": [{**GOOD_COOKIE, "expires": 10 ** 400}]}, "a cookie's expiry"),
    ({"access_token": "token", "cookies": [{**GOOD_COOKIE, "expires": "soon"}]}, "a cookie's expiry"),
    ({"access_token": "token", "cookies": [{**GOOD_COOKIE, "expires": True}]}, "a cookie's expiry"),
])
def test_a_hostile_or_broken_entry_is_ignored_with_a_warning(cache_path, entry, problem):
    write_cache(cache_path, {"http://a": entry})
    with pytest.warns(fakegpt.SessionCacheWarning, match="has an unusable entry for http://a") as record:
        assert SessionCache(cache_path).load("http://a") is None
    assert problem in str(record[0].message)
    assert "X-Evil" not in str(record[0].message) and "tökén" not in str(record[0].message)


def test_a_hostile_entry_means_a_normal_login_that_replaces_it(fakegpt_emulator, cache_path):
    write_cache(cache_path, {fakegpt_emulator.url: {"access_token": "abc\r\nX-Evil: 1"}})
    with pytest.warns(fakegpt.SessionCacheWarning, match="the access token is not"):
        client = fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path)
    with client:
        assert client.complete(HI).startswith("Hello!")
    assert SessionCache(cache_path).load(fakegpt_emulator.url)["access_token"].startswith("emu-")


def test_a_valid_entry_with_cookies_round_trips(cache_path):
    write_cache(cache_path, {"http://a": {"access_token": "token", "session_password": "pw",
                                          "cookies": [{**GOOD_COOKIE, "expires": 4102444800}], "extra": "kept"}})
    cache = SessionCache(cache_path)
    entry = cache.load("http://a")
    assert (entry["access_token"], entry["session_password"]) == ("token", "pw")
    assert [(c.name, c.value, c.expires) for c in cache.cookies(entry)] == [("credential", "abc", 4102444800)]


def test_two_processes_starting_at_once_share_one_password(fakegpt_emulator, cache_path):
    """Both log in before either saved a token: they still agree on the
    isolation password, so the conversation of the one that saved first is
    reachable after the other saved its login."""
    one = fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path)
    two = fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path)
    with one, two:
        conversation = one.conversation()
        conversation.complete("Remember the word teapot.")
        two.complete(HI)  # logs in and saves last
    assert fakegpt_emulator.counts["logins"] == 2
    fakegpt_emulator.expire_access_tokens()
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as later:
        reply = later.conversation(conversation_id=conversation.conversation_id,
                                   parent_message_id=conversation.parent_message_id).complete("Which word?")
    assert 'Earlier you said "Remember the word teapot."' in reply


def test_a_chosen_password_is_not_overridden_by_the_cache(fakegpt_emulator, cache_path):
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        client.complete(HI)  # the cache now holds a login under the shared password
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path, session_password="mine-secret") as mine:
        conversation = mine.conversation()
        conversation.complete("Remember the word teapot.")
    assert fakegpt_emulator.counts["logins"] == 2  # its own login, not the cached one
    fakegpt_emulator.expire_access_tokens()
    with fakegpt.Client(fakegpt_emulator.url, session_password="mine-secret") as again:
        reply = again.conversation(conversation_id=conversation.conversation_id,
                                   parent_message_id=conversation.parent_message_id).complete("Which word?")
    assert 'Earlier you said "Remember the word teapot."' in reply


def test_a_symlink_is_not_followed(cache_path, tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    SessionCache(elsewhere).save("http://a", "token-a", jar(), None)
    cache_path.parent.mkdir(mode=0o700)
    cache_path.symlink_to(elsewhere)
    with pytest.warns(fakegpt.SessionCacheWarning, match="cannot be read"):
        assert SessionCache(cache_path).load("http://a") is None


def test_an_unwritable_cache_warns_and_the_call_still_succeeds(tmp_path, fakegpt_emulator):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with fakegpt.Client(fakegpt_emulator.url, session_cache=blocker / "sessions.json") as client:
            assert client.complete(HI).startswith("Hello!")
    assert {w.category for w in record} == {fakegpt.SessionCacheWarning}
    assert "it cannot be read (Not a directory)" in str(record[0].message)
    assert all(str(w.message).startswith(f"could not write the session cache {blocker / 'sessions.json'}: ")
               for w in record[1:]) and len(record) >= 2


def test_concurrent_writers_never_tear_the_file_nor_drop_an_entry(cache_path):
    """Four processes save their own server's login 40 times each while this
    one keeps reading: every read is whole, and every server is there at the end."""
    writer = textwrap.dedent("""
        import sys, requests
        from fakegpt._cache import SessionCache
        cache, me = SessionCache(sys.argv[1]), sys.argv[2]
        for i in range(40):
            cache.save("http://server-" + me, "token-%s-%d" % (me, i) + "x" * 2000, requests.cookies.RequestsCookieJar())
    """)
    SessionCache(cache_path).save("http://first", "token", jar(), None)
    processes = [subprocess.Popen([sys.executable, "-c", writer, str(cache_path), str(n)]) for n in range(4)]
    reads = 0
    try:
        while any(p.poll() is None for p in processes) or reads == 0:
            with open(cache_path, "rb") as file:
                data = json.loads(file.read())  # a torn file would fail here
            assert data["format"] == "fakegpt-session-cache/1"
            if any(p.poll() is None for p in processes) and len(data["sessions"]) > 1:
                reads += 1  # a read while writers were at work
            time.sleep(0.002)
    finally:
        for process in processes:
            process.wait(60)
    assert [p.returncode for p in processes] == [0, 0, 0, 0] and reads >= 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = SessionCache(cache_path)
        for n in range(4):
            assert cache.load(f"http://server-{n}")["access_token"].startswith(f"token-{n}-39")
        assert cache.load("http://first")["access_token"] == "token"
    assert mode(cache_path) == 0o600 and not [n for n in os.listdir(cache_path.parent) if n.endswith(".tmp")]


def test_threads_saving_at_once_keep_every_entry(cache_path):
    cache = SessionCache(cache_path)
    assert at_once(lambda n: cache.save(f"http://t{n}", f"token-{n}", jar(), None), 16) == [None] * 16
    assert all(cache.load(f"http://t{n}")["access_token"] == f"token-{n}" for n in range(16))


# -- with a client ----------------------------------------------------------------------
def test_a_second_client_skips_the_login(fakegpt_emulator, cache_path):
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        client.complete(HI)
    assert fakegpt_emulator.counts["logins"] == 1
    saved = SessionCache(cache_path).load(fakegpt_emulator.url)
    assert saved["access_token"].startswith("emu-")
    seen = len(fakegpt_emulator.requests)
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        assert client.complete(HI).startswith("Hello!")
    assert paths(fakegpt_emulator, seen) == ["/api/conversation"] and fakegpt_emulator.counts["logins"] == 1


def test_a_new_process_skips_the_login(fakegpt_emulator, cache_path):
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        client.complete(HI)
    seen = len(fakegpt_emulator.requests)
    script = ("import fakegpt, sys\n"
              "with fakegpt.Client(sys.argv[1]) as client:\n"
              "    print(client.complete([{'role': 'user', 'content': 'from a new process'}]))\n")
    done = subprocess.run([sys.executable, "-c", script, fakegpt_emulator.url], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "FAKEGPT_SESSION_CACHE": str(cache_path)})
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith('Hello! You said "from a new process".')
    assert paths(fakegpt_emulator, seen) == ["/api/conversation"] and fakegpt_emulator.counts["logins"] == 1


def test_a_stale_cached_token_is_replaced_after_its_401(fakegpt_emulator, cache_path):
    SessionCache(cache_path).save(fakegpt_emulator.url, "stale-token", jar(), "shared-password")
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        assert client.complete(HI).startswith("Hello!")
    assert paths(fakegpt_emulator) == ["/api/conversation", "/api/loads", "/auth/login", "/api/auth/session",
                                       "/api/conversation"]
    fresh = SessionCache(cache_path).load(fakegpt_emulator.url)["access_token"]
    assert fresh.startswith("emu-") and fresh != "stale-token"
    seen = len(fakegpt_emulator.requests)
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:  # the next one uses the new one
        client.complete(HI)
    assert paths(fakegpt_emulator, seen) == ["/api/conversation"]


def test_conversations_outlive_an_expired_cached_token(fakegpt_emulator, cache_path):
    """The isolation password is cached with the token: a later process that
    must log in again still finds the conversation the server keeps."""
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        conversation = client.conversation()
        conversation.complete("Remember the word teapot.")
        ids = conversation.conversation_id, conversation.parent_message_id
    fakegpt_emulator.expire_access_tokens()
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        reply = client.conversation(conversation_id=ids[0], parent_message_id=ids[1]).complete("Which word?")
    assert 'Earlier you said "Remember the word teapot."' in reply
    assert fakegpt_emulator.counts["logins"] == 2  # the expired token was replaced by a login with the same password


def test_an_access_token_argument_bypasses_the_cache(fakegpt_emulator, cache_path):
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        client.complete(HI)
    cached = SessionCache(cache_path).load(fakegpt_emulator.url)["access_token"]
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path, access_token="mine") as client:
        with pytest.raises(fakegpt.AuthenticationError):
            client.complete(HI)
    assert SessionCache(cache_path).load(fakegpt_emulator.url)["access_token"] == cached


def test_a_corrupt_cache_means_a_normal_login_that_repairs_it(fakegpt_emulator, cache_path):
    cache_path.parent.mkdir(mode=0o700)
    cache_path.write_bytes(b"\x00garbage")
    os.chmod(cache_path, 0o600)
    with pytest.warns(fakegpt.SessionCacheWarning, match="is not valid JSON"):
        client = fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path)
    with client:
        assert client.complete(HI).startswith("Hello!")
    assert SessionCache(cache_path).load(fakegpt_emulator.url)["access_token"].startswith("emu-")


# -- choosing the file --------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_env_true_means_the_per_user_file(monkeypatch, tmp_path, value):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", value)
    assert default_cache_path() == str(tmp_path / "fakegpt" / "sessions.json")
    with fakegpt.Client("http://127.0.0.1:9") as client:
        assert client.session_cache == str(tmp_path / "fakegpt" / "sessions.json")


@pytest.mark.parametrize("value", ["0", "false", "off", "no", ""])
def test_env_false_means_no_cache(monkeypatch, value):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", value)
    with fakegpt.Client("http://127.0.0.1:9") as client:
        assert client.session_cache is None


def test_env_path_and_arguments_beating_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FAKEGPT_SESSION_CACHE", str(tmp_path / "from-env.json"))
    with fakegpt.Client("http://127.0.0.1:9") as client:
        assert client.session_cache == str(tmp_path / "from-env.json")
    with fakegpt.Client("http://127.0.0.1:9", session_cache=False) as client:
        assert client.session_cache is None
    with fakegpt.Client("http://127.0.0.1:9", session_cache=tmp_path / "argument.json") as client:
        assert client.session_cache == str(tmp_path / "argument.json")


@pytest.mark.parametrize("value", [3, "", b"path", ["x"]])
def test_a_bad_session_cache_argument_is_a_type_error(value):
    with pytest.raises(TypeError, match="session_cache must be True, False, None or a path"):
        fakegpt.Client("http://127.0.0.1:9", session_cache=value)


def test_the_cache_is_per_server(cache_path):
    with Emulator() as one, Emulator() as two:
        for emulator in (one, two):
            with fakegpt.Client(emulator.url, session_cache=cache_path) as client:
                client.complete(HI)
        for emulator in (one, two):
            with fakegpt.Client(emulator.url, session_cache=cache_path) as client:
                client.complete(HI)
            assert emulator.counts["logins"] == 1


# -- paths that are not a regular file ------------------------------------------------------
def descriptors_on(path):
    """How many of this process's file descriptors are open on *path*."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:  # closed meanwhile
            pass
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_a_directory_as_cache_path_is_ignored_with_a_warning_and_no_descriptor_leaks(tmp_path):
    path = tmp_path / "sessions.json"
    path.mkdir(mode=0o700)
    cache = SessionCache(path)
    for _ in range(20):
        with pytest.warns(fakegpt.SessionCacheWarning, match="ignoring the session cache .*: it is not a regular file"):
            assert cache.load("http://a") is None
        with pytest.warns(fakegpt.SessionCacheWarning, match="could not write .*: it is not a regular file"):
            assert cache.claim_password("http://a", "proposed") == "proposed"
        with pytest.warns(fakegpt.SessionCacheWarning, match="could not write"):
            cache.save("http://a", "token", jar(), "pw")
        assert cache.dead_tokens("http://a") == {}
    assert descriptors_on(path) == 0
    assert path.is_dir() and list(path.iterdir()) == []  # never replaced nor written into


def test_a_client_with_a_directory_as_cache_path_warns_and_works(fakegpt_emulator, tmp_path):
    path = tmp_path / "sessions.json"
    path.mkdir()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with fakegpt.Client(fakegpt_emulator.url, session_cache=path) as client:
            assert client.complete(HI).startswith("Hello!")
    assert record and {w.category for w in record} == {fakegpt.SessionCacheWarning}
    assert "ignoring the session cache" in str(record[0].message) and "not a regular file" in str(record[0].message)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_cache_path_is_not_waited_on(fakegpt_emulator, tmp_path):
    import threading

    path = tmp_path / "sessions.json"
    os.mkfifo(path, 0o600)
    outcome = []

    def use_it():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            with fakegpt.Client(fakegpt_emulator.url, session_cache=path) as client:
                outcome.append((client.complete(HI), [str(w.message) for w in record]))

    thread = threading.Thread(target=use_it, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():  # blocked opening the FIFO: let it go, then fail
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("Client() blocked on a FIFO session cache")
    (reply, messages), = outcome
    assert reply.startswith("Hello!") and stat.S_ISFIFO(os.lstat(path).st_mode)
    assert any("not a regular file" in m for m in messages)


def test_a_file_too_large_is_ignored(cache_path):
    write_cache(cache_path, {"http://a": {"access_token": "token", "padding": "x" * (9 << 20)}})
    with pytest.warns(fakegpt.SessionCacheWarning, match="is too large"):
        assert SessionCache(cache_path).load("http://a") is None


# -- cookie values ----------------------------------------------------------------------
@pytest.mark.parametrize("value", ['"a b, c"', "x y", "one,two", 'q"uoted\\', " "])
def test_cookie_values_with_spaces_commas_or_quotes_are_kept(cache_path, value):
    cache = SessionCache(cache_path)
    cache.save("http://a", "token", jar(credential=value), "password-a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entry = cache.load("http://a")
    assert [(c.name, c.value) for c in cache.cookies(entry)] == [("credential", value)]
    assert cache.claim_password("http://a", "other") == "password-a"


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\x00b", "a\x7fb", "tab\there", "é"])
def test_cookie_values_that_would_break_the_header_are_refused(cache_path, value):
    write_cache(cache_path, {"http://a": {"access_token": "token", "cookies": [{**GOOD_COOKIE, "value": value}]}})
    with pytest.warns(fakegpt.SessionCacheWarning, match="a cookie's value is not valid"):
        assert SessionCache(cache_path).load("http://a") is None


def test_a_bad_cookie_never_costs_the_saved_password(cache_path):
    write_cache(cache_path, {"http://a": {"access_token": "token", "session_password": "saved-pw",
                                          "cookies": [{**GOOD_COOKIE, "value": "x\r\ny"}]}})
    cache = SessionCache(cache_path)
    assert cache.claim_password("http://a", "fresh") == "saved-pw"
    assert cache.claim_password("http://a", "again") == "saved-pw"
    raw = json.loads(cache_path.read_text())["sessions"]["http://a"]
    assert raw["session_password"] == "saved-pw"


def test_an_unusable_password_is_replaced_by_the_claim(cache_path):
    write_cache(cache_path, {"http://a": {"access_token": "token", "session_password": "bad pw"}})
    assert SessionCache(cache_path).claim_password("http://a", "fresh") == "fresh"
    assert json.loads(cache_path.read_text())["sessions"]["http://a"] == {"session_password": "fresh"}


# -- dead tokens --------------------------------------------------------------------------
def test_dead_tokens_round_trip_expire_and_survive_a_save(cache_path):
    cache = SessionCache(cache_path)
    now = time.time()
    cache.update_dead_tokens("http://a", {"a" * 32: now + 100, "b" * 32: now + 100})
    cache.update_dead_tokens("http://a", {"c" * 32: now - 1}, revived=["b" * 32])
    assert cache.dead_tokens("http://a") == {"a" * 32: pytest.approx(now + 100)}
    cache.save("http://a", "token", jar(), "pw-a")
    assert set(cache.dead_tokens("http://a")) == {"a" * 32}
    assert cache.load("http://a")["access_token"] == "token" and cache.dead_tokens("http://b") == {}
    cache.update_dead_tokens("http://a", {}, revived=["a" * 32])
    assert cache.dead_tokens("http://a") == {} and cache.load("http://a")["session_password"] == "pw-a"


def test_an_entry_without_dead_tokens_still_loads_and_a_malformed_list_is_only_ignored(cache_path):
    write_cache(cache_path, {"http://a": {"access_token": "token"},
                             "http://b": {"access_token": "token", "dead_tokens": {"x y": 9e9, "ok": "soon", "": 1}},
                             "http://c": {"access_token": "token", "dead_tokens": ["a"]}})
    cache = SessionCache(cache_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for url in ("http://a", "http://b", "http://c"):
            assert cache.load(url)["access_token"] == "token" and cache.dead_tokens(url) == {}


def test_dead_tokens_are_bounded(cache_path):
    from fakegpt._constants import MAX_DEAD_TOKENS

    cache = SessionCache(cache_path)
    now = time.time()
    cache.update_dead_tokens("http://a", {f"{i:032x}": now + 1000 + i for i in range(MAX_DEAD_TOKENS + 20)})
    kept = cache.dead_tokens("http://a")
    assert len(kept) == MAX_DEAD_TOKENS and f"{MAX_DEAD_TOKENS + 19:032x}" in kept and f"{0:032x}" not in kept
