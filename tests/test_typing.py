"""The public API as users type it: ``mypy --strict`` on a script written as the
docs show (tests/typing/user_script.py), where ``assert_type`` pins what each
call gives (``str`` deltas, not ``Any``)."""
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "typing", "user_script.py")


def test_a_users_script_type_checks_under_mypy_strict(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the 'typecheck' extra")
    # The script uses contextlib.aclosing() as the docs do: Python 3.10's, whatever Python checks it.
    target = [] if sys.version_info >= (3, 10) else ["--python-version", "3.10"]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", str(tmp_path), *target,
         SCRIPT],
        capture_output=True, text=True, timeout=600)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
