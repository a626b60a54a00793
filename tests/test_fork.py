"""A child forked after calls were made: it neither deadlocks nor touches the parent's calls.

Each scenario runs in a fresh interpreter (a script below), so that forking
while threads stream does not involve pytest's own process; a child that
deadlocks is ended by its own alarm, and the script by the subprocess timeout.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")

_PRELUDE = textwrap.dedent('''
    import os, signal, sys, threading, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, use of fork()" (3.12+)
    import fakegpt
    from fakegpt import FakeGpt
    from fakegpt.emulator import Emulator, default_responder

    HI = [{"role": "user", "content": "Hi"}]
    emulator = Emulator(delay=0.002).start()  # never stopped: a child must not stop the parent's server
    FakeGpt.url = emulator.url

    def child_call(how):
        """In the child: one call through FakeGpt, then exit the way *how* says."""
        signal.alarm(60)  # a deadlocked child ends (SIGALRM) instead of hanging the test
        ok = "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI)) == default_responder("Hi")
        if how == "exit":
            sys.exit(0 if ok else 3)  # the normal exit: atexit handlers and finalizers run
        os._exit(0 if ok else 3)

    def wait(pid):
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
''')

_LIVE_STREAM = _PRELUDE + textwrap.dedent('''
    how = sys.argv[1]
    prompt = [{"role": "user", "content": " ".join(["word"] * 300)}]
    stream = FakeGpt.create_completion("gpt-3.5-turbo", prompt)
    text = next(stream)  # the parent's stream is live: its socket is shared with the child
    pid = os.fork()
    if pid == 0:
        child_call(how)
    code = wait(pid)
    text += "".join(stream)
    assert code == 0, f"the child failed: {code}"
    assert text == default_responder(prompt[0]["content"]), "the parent's stream was cut"
    print("PASS")
''')

_LOCKS_HELD = _PRELUDE + textwrap.dedent('''
    from fakegpt import _bridge, _secrets, _watchdog, provider
    "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI))  # calls were made: the registry has a client
    held, release = threading.Event(), threading.Event()

    def hold():  # another thread holds every module lock while the process forks
        with provider._registry_lock, _secrets._lock, _watchdog._lock, _bridge._daemons_lock:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    held.wait(60)
    pid = os.fork()
    if pid == 0:
        child_call(sys.argv[1])
    release.set()
    assert wait(pid) == 0, "the child deadlocked or failed"
    print("PASS")
''')

_MANY_FORKS = _PRELUDE + textwrap.dedent('''
    stop = threading.Event()
    failures = []

    def stream_forever():
        while not stop.is_set():
            try:
                assert "".join(FakeGpt.create_completion("gpt-3.5-turbo", HI)) == default_responder("Hi")
            except BaseException as error:
                failures.append(error)
                return

    streamers = [threading.Thread(target=stream_forever, daemon=True) for _ in range(4)]
    for thread in streamers:
        thread.start()
    codes = []
    for i in range(40):
        pid = os.fork()
        if pid == 0:
            child_call("exit" if i % 2 else "_exit")
        codes.append(wait(pid))
    stop.set()
    for thread in streamers:
        thread.join(60)
    assert codes == [0] * 40, f"children that failed (-14: deadlocked): {[c for c in codes if c]}"
    assert not failures, f"the parent's streams failed: {failures!r}"
    print("PASS")
''')


_ONE_CLIENT = _PRELUDE + textwrap.dedent('''
    # One Client shared with the child: the parent streams on it, and another
    # parent's thread is in the middle of a login on it, when the process forks.
    how, parent = sys.argv[1], os.getpid()
    client = fakegpt.Client(emulator.url)
    prompt = [{"role": "user", "content": " ".join(["word"] * 300)}]
    stream = client.stream(prompt)
    text = next(stream)
    client.access_token = None  # the next call logs in again
    in_login, release, logged_in = threading.Event(), threading.Event(), []
    real_login = client._token._login

    def held_login():
        if os.getpid() == parent:
            in_login.set()
            release.wait(60)
        return real_login()

    client._token._login = held_login
    login_thread = threading.Thread(target=lambda: logged_in.append(client.complete(HI)), daemon=True)
    login_thread.start()
    in_login.wait(60)
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)
        ok = client.complete(HI) == default_responder("Hi")  # its own login, its own connections
        if how == "exit":
            sys.exit(0 if ok else 3)
        os._exit(0 if ok else 3)
    code = wait(pid)
    text += "".join(stream)
    release.set()
    login_thread.join(60)
    assert code == 0, f"the child deadlocked or failed: {code}"
    assert text == default_responder(prompt[0]["content"]), "the parent's stream was cut"
    assert logged_in == [default_responder("Hi")] and client.complete(HI) == default_responder("Hi")
    print("PASS")
''')

_HANG_UP = textwrap.dedent('''
    import os, signal, threading, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, use of fork()" (3.12+)
    import fakegpt
    from fakegpt.emulator import Emulator, _hangup

    def hang_up_heard():
        """An emulator of this process streams a reply whose client aborts:
        whether its responder hears the hang-up."""
        hangups, began, done = [], threading.Event(), threading.Event()

        def responder(prompt, hangup):
            hangups.append(hangup)
            began.set()
            yield "hello "
            done.wait(60)  # until the check below is over
            yield "world"

        with Emulator(responder=responder) as emulator, fakegpt.Client(emulator.url) as client:
            stream = client.stream([{"role": "user", "content": "Hi"}])
            next(iter(stream))
            stream.abort()
            heard = began.wait(60) and hangups[0].wait(60)
            done.set()
        return heard

    assert hang_up_heard(), "the parent's responder did not hear the hang-up"  # the parent's watcher runs
    held, release = threading.Event(), threading.Event()

    def hold():  # another thread holds the watcher's lock while the process forks
        with _hangup._watcher_lock:
            held.set()
            release.wait(60)

    threading.Thread(target=hold, daemon=True).start()
    held.wait(60)
    pid = os.fork()
    if pid == 0:
        signal.alarm(120)  # a deadlocked child ends (SIGALRM) instead of hanging the test
        os._exit(0 if hang_up_heard() else 3)
    release.set()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child's responder did not hear the hang-up: {status}"
    assert hang_up_heard(), "the parent's watcher no longer works after the child's"
    print("PASS")
''')

_CACHE_LOCK = textwrap.dedent('''
    import os, signal, subprocess, sys, tempfile, threading
    from fakegpt._cache_lock import locked

    TRY = ("import sys\\nfrom fakegpt._cache_lock import locked, Unusable\\ntry:\\n"
           "    with locked(sys.argv[1], float(sys.argv[2])): print('locked')\\n"
           "except Unusable as error: print('busy' if error.busy else error)")
    directory = tempfile.mkdtemp()

    def another_process(timeout):
        """What another process gets when it takes the lock, waiting at most *timeout* seconds."""
        return subprocess.run([sys.executable, "-c", TRY, directory, str(timeout)], capture_output=True,
                              text=True, timeout=120).stdout.strip()

    def wait(pid):
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    # Another thread holds the lock while the process forks; the child lives on after the release.
    held, release = threading.Event(), threading.Event()

    def hold():
        with locked(directory, 30):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(60)
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        signal.alarm(120)
        os.close(go_w)
        os.read(go_r, 1)  # lives until the other process has tried (or the parent failed)
        with locked(directory, 30):
            os._exit(0)
    release.set()
    holder.join(60)
    assert another_process(30) == "locked", "the lock stayed held while the child lived"
    os.write(go_w, b"g")
    assert wait(pid) == 0, "the child could not take the lock"

    # The holder forks: the child leaving the block neither releases the parent's lock nor closes its file.
    with locked(directory, 30):
        pid = os.fork()
        if pid:
            assert wait(pid) == 0, "the child failed"
            assert another_process(0.1) == "busy", "the child released the parent's lock"
    if pid == 0:
        os._exit(0)
    assert another_process(30) == "locked", "the parent's lock was not released"
    print("PASS")
''')


def run(script, *args):
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and result.stdout.strip() == "PASS", result.stdout + result.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["exit", "_exit"])
def test_a_child_exiting_leaves_the_parents_live_stream_alone(how):
    run(_LIVE_STREAM, how)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["exit", "_exit"])
def test_a_child_forked_while_another_thread_holds_the_module_locks_makes_its_call(how):
    run(_LOCKS_HELD, how)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["exit", "_exit"])
def test_a_child_uses_a_client_of_its_parent_mid_stream_and_mid_login(how):
    run(_ONE_CLIENT, how)


@pytest.mark.timeout(300)
def test_a_childs_emulator_hears_its_clients_hang_up_and_leaves_the_parents_watcher_alone():
    run(_HANG_UP)


@pytest.mark.timeout(300)
def test_a_child_forked_while_the_session_cache_lock_is_held_does_not_keep_it_held():
    run(_CACHE_LOCK)


@pytest.mark.timeout(300)
def test_forty_children_forked_while_threads_stream_neither_deadlock_nor_cut_the_parent():
    run(_MANY_FORKS)


def test_one_fork_handler_resets_every_module():
    from fakegpt import (
        _bridge, _cache_lock, _call, _fork, _g4f, _g4f_errors, _g4f_register, _secrets, _transport, _wakeups,
        _watchdog, provider,
    )
    from fakegpt.emulator import _hangup

    names = {(reset.__module__, reset.__name__) for reset in _fork._resets}
    modules = {module for module, _ in names}
    for module in (_bridge, _call, _g4f, _g4f_errors, _g4f_register, _secrets, _transport, _wakeups, _watchdog,
                   provider, _hangup, _cache_lock):
        assert module.__name__ in modules, f"{module.__name__} registers no reset"


def test_a_clients_locks_and_connections_are_reset_by_that_handler_too():
    import fakegpt
    from fakegpt import _fork

    client = fakegpt.Client("http://127.0.0.1:9")
    owned = [client._http, client._token, client._engine, client._login._dead]
    assert all(obj in _fork._objects for obj in owned)
    client.close()
