"""The session cache against other processes and other users: a held lock, planted
links, unsafe directories, a killed writer's leftovers; and no write unless there
is something to save."""
import logging
import os
import subprocess
import sys
import threading
import warnings

import pytest

import fakegpt
from fakegpt._cache import SessionCache

from .test_cache import HI, jar


@pytest.fixture
def cache_path(tmp_path):
    return tmp_path / "cache" / "sessions.json"


def in_a_thread(call, timeout=60):
    """``call()``'s result, run in a thread that must end within *timeout* s (it fails the test otherwise)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = call()
        except BaseException as error:  # reported to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still blocked after {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_a_lock_another_process_holds_is_waited_on_briefly_then_the_call_goes_on_without_the_cache(
        fakegpt_emulator, cache_path, caplog, monkeypatch):
    SessionCache(cache_path).save("http://other", "token-other", jar(), None)  # the directory and lock exist
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "print('locked', flush=True)\n"
                               "sys.stdin.read()\n",
         str(cache_path.parent / ".sessions.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        monkeypatch.setattr(SessionCache, "lock_timeout", 0.5, raising=False)
        caplog.set_level(logging.WARNING, logger="fakegpt")

        def use():
            with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
                return client.complete(HI), client.complete(HI)

        first, second = in_a_thread(use)
        assert first.startswith("Hello!") and second.startswith("Hello!")
    finally:
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "fakegpt"]
    assert len(warned) == 1 and "has held its lock for 0.5 s; going on without it" in warned[0]  # said once
    assert fakegpt_emulator.counts["logins"] == 1
    assert SessionCache(cache_path).load(fakegpt_emulator.url) is None  # nothing was written meanwhile
    assert SessionCache(cache_path).load("http://other")["access_token"] == "token-other"


def test_a_planted_lock_symlink_is_not_followed(fakegpt_emulator, cache_path, tmp_path):
    cache_path.parent.mkdir(mode=0o700)
    target = tmp_path / "victim"
    (cache_path.parent / ".sessions.lock").symlink_to(target)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
            assert client.complete(HI).startswith("Hello!")
    assert not os.path.lexists(target)  # nothing was created where the link points
    assert [str(w.message) for w in record if w.category is fakegpt.SessionCacheWarning] == [
        f"not using the session cache {cache_path}: its lock file {cache_path.parent / '.sessions.lock'} cannot be "
        f"opened (Too many levels of symbolic links)"]
    assert not cache_path.exists()


@pytest.mark.parametrize("spoil, problem", [
    (lambda d: os.chmod(d, 0o770), "is writable by other users (mode 770, expected 700)"),
    (lambda d: os.chmod(d, 0o1777), "is writable by other users (mode 1777, expected 700)"),
    pytest.param(lambda d: os.chown(d, 54321, -1), "belongs to another user (uid 54321)",
                 marks=pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                          reason="giving a directory to another user needs root")),
], ids=["group-writable", "world-writable", "another-users"])
def test_an_unsafe_cache_directory_means_no_cache(fakegpt_emulator, cache_path, spoil, problem):
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        client.complete(HI)  # a saved login, in a safe directory
    spoil(cache_path.parent)
    before = cache_path.read_bytes()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
            assert client.complete(HI).startswith("Hello!")
            client.access_token = None  # a second login: not saved either
            assert client.complete(HI).startswith("Hello!")
    assert [str(w.message) for w in record] == [f"not using the session cache {cache_path}: its directory {problem}"]
    assert fakegpt_emulator.counts["logins"] == 3  # the saved login was not used
    assert cache_path.read_bytes() == before  # nor replaced


def test_a_killed_writers_temporary_files_are_swept(cache_path):
    cache = SessionCache(cache_path)
    cache.save("http://a", "token-a", jar(), None)
    for name in (".sessions-k1ll3d.tmp", ".sessions-x.tmp"):
        (cache_path.parent / name).write_text('{"sessions": {"http://a": {"access_token": "token-a"}}}')
    (cache_path.parent / "notes.tmp").write_text("not ours")
    cache.save("http://b", "token-b", jar(), None)
    assert sorted(os.listdir(cache_path.parent)) == [".sessions.lock", "notes.tmp", "sessions.json"]
    assert cache.load("http://a")["access_token"] == "token-a"


def test_creating_a_client_writes_nothing(fakegpt_emulator, cache_path):
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path):
        pass
    assert not cache_path.parent.exists()
    with fakegpt.Client(fakegpt_emulator.url, session_cache=cache_path) as client:
        client.complete(HI)
    assert SessionCache(cache_path).load(fakegpt_emulator.url)["session_password"]
