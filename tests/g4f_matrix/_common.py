"""Shared pieces of the gpt4free compatibility checks (run by noxfile.py, one g4f per venv).

Every check sends its own prompt, so its exact reply is known in advance
(:func:`expected`), and records one result: ``pass``, ``fail`` (with the
error) or ``n/a`` (with the reason, which is verified too).
"""
import importlib.metadata
import json
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def responder(prompt):
    """The emulator's reply to *prompt*: many words, non-ASCII, so deltas are many and exact."""
    responder.calls += 1
    return expected(prompt)


responder.calls = 0


def expected(prompt):
    return f"Réponse à «{prompt}»: ünïcode ✓, streamed word by word — the end."


def messages(prompt):
    return [{"role": "user", "content": prompt}]


def g4f_version():
    """(major, minor) of the installed g4f, and its full version string."""
    version = importlib.metadata.version("g4f")
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor), version


class Results:
    """The results of one process, printed as lines and as JSON for the docs table."""

    def __init__(self, version):
        self.version = version
        self.rows = []  # (entry, mode, status, detail)

    def run(self, entry, mode, check):
        """Run ``check()``; an AssertionError or any exception is a failure."""
        try:
            check()
        except Exception as error:  # noqa: BLE001 (a failure is recorded, and fails the run)
            detail = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            self.rows.append((entry, mode, "fail", detail))
            print(f"FAIL {entry} [{mode}]: {detail}", flush=True)
            traceback.print_exc()
            return
        self.rows.append((entry, mode, "pass", ""))
        print(f"pass {entry} [{mode}]", flush=True)

    def not_applicable(self, entry, mode, reason, proof):
        """Record ``n/a``; *proof()* must show the reason holds (e.g. the import fails)."""
        try:
            proof()
        except Exception as error:  # noqa: BLE001
            detail = f"n/a claimed ({reason}) but the proof failed: {type(error).__name__}: {error}"
            self.rows.append((entry, mode, "fail", detail))
            print(f"FAIL {entry} [{mode}]: {detail}", flush=True)
            return
        self.rows.append((entry, mode, "n/a", reason))
        print(f"n/a  {entry} [{mode}]: {reason}", flush=True)

    def failed(self):
        return [row for row in self.rows if row[2] == "fail"]

    def finish(self, report_name):
        """Write the JSON report next to the session's venv, print the closing line, exit."""
        path = os.environ.get("G4F_MATRIX_REPORT_DIR")
        if path:
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, f"{report_name}-{self.version}.json"), "w", encoding="utf-8") as f:
                json.dump({"g4f": self.version, "rows": self.rows}, f, ensure_ascii=False, indent=1)
        passed = sum(1 for row in self.rows if row[2] == "pass")
        skipped = sum(1 for row in self.rows if row[2] == "n/a")
        print(f"{report_name} g4f {self.version}: {passed} passed, {len(self.failed())} failed, {skipped} skipped")
        sys.exit(1 if self.failed() else 0)


def raises(error_type, call, match=None):
    """Assert that ``call()`` raises *error_type* (with *match* in its message)."""
    try:
        call()
    except error_type as error:
        if match is not None and match not in str(error):
            raise AssertionError(f"{type(error).__name__} without {match!r}: {error}") from error
        return
    raise AssertionError(f"no {error_type.__name__} raised")
