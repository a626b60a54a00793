"""Helpers to drive the command line: in-process, as a process, and on a pseudo-terminal."""
import io
import os
import pty
import select
import shutil
import subprocess
import sys
import time

from fakegpt import cli

# Runs the command as an interactive shell runs a foreground job, whatever
# this test run inherited: SIGINT back to its default (a shell started with
# SIGINT ignored passes that on), and on a pseudo-terminal that terminal as the
# controlling one, so that a typed Ctrl-C (\x03) sends SIGINT as it does for a user.
_AS_A_SHELL_JOB = """\
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
if sys.argv[1] == "tty":
    import fcntl, termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
os.execv(sys.argv[2], sys.argv[2:])
"""


def run(argv, capsys, stdin=""):
    """main() in-process with a non-terminal stdin; returns (status, stdout, stderr)."""
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        try:
            status = cli.main(argv)
        except SystemExit as exit_:
            status = exit_.code
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return status, out, err


def console_script():
    found = shutil.which("fakegpt", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "fakegpt"]


def command(*args, tty=False):
    """The argv of ``fakegpt ARGS`` started as a shell job (see above); with
    *tty*, Popen needs ``start_new_session=True`` and stdin on the terminal."""
    return [sys.executable, "-c", _AS_A_SHELL_JOB, "tty" if tty else "-"] + console_script() + list(args)


def read_until(fd, marker: bytes, timeout=10.0, data=b"") -> bytes:
    """Read *fd* until *marker* has come (a generous bound: only a hang fails)."""
    deadline = time.monotonic() + timeout
    while marker not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"timed out waiting for {marker!r}; got {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"end of output before {marker!r}; got {data!r}")
        data += chunk
    return data


def drain(fd) -> bytes:
    """What is left to read on a terminal whose other side has exited."""
    data = b""
    while select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side of the terminal is gone
            break
        if not chunk:
            break
        data += chunk
    return data


class Terminal:
    """``fakegpt chat ARGV`` with stdin and stderr on a pseudo-terminal (stdout
    too with *stdout_on_terminal*, else a pipe), as a user's shell runs it."""

    def __init__(self, argv, env=None, stdout_on_terminal=False):
        self.master, slave = pty.openpty()
        stdout = slave if stdout_on_terminal else subprocess.PIPE
        self.process = subprocess.Popen(command("chat", *argv, tty=True), stdin=slave, stdout=stdout, stderr=slave,
                                        env=env, start_new_session=True)
        os.close(slave)
        self.seen, self.position = b"", 0

    def wait_for(self, marker: bytes, timeout=10.0) -> bytes:
        """Read the terminal until *marker* comes after the previous one waited
        for; returns what the terminal showed in between, *marker* included."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen[self.position:]:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            try:
                chunk = os.read(self.master, 4096) if ready else b""
            except OSError:  # the other side of the terminal is gone
                chunk = b""
            if not chunk:
                raise AssertionError(f"no {marker!r} on the terminal; it showed {self.seen[self.position:]!r}")
            self.seen += chunk
        end = self.seen.index(marker, self.position) + len(marker)
        shown, self.position = self.seen[self.position:end], end
        return shown

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self):
        """Wait for the exit; returns (status, stdout, everything the terminal showed)."""
        try:
            out, _ = self.process.communicate(timeout=10)
            self.seen += drain(self.master)
        finally:
            self.process.kill()
            os.close(self.master)
        return self.process.returncode, (out or b"").decode(), self.seen


def chat_on_a_terminal(argv, typed, env=None):
    """Run ``fakegpt chat`` on a terminal, typing each of *typed* at a ``you>``
    prompt; returns (status, stdout, terminal)."""
    terminal = Terminal(argv, env=env)
    try:
        for keys in typed:
            terminal.wait_for(b"you> ")
            terminal.type(keys)
    finally:
        status, out, seen = terminal.finish()
    return status, out, seen
