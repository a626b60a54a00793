"""What a packager needs: the build system, the license, and a source distribution with the tests and docs."""
import configparser
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_pyproject_names_setuptools_as_the_build_system():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^\[build-system\]\nrequires = \["setuptools>=\d+"\]', text, re.M)
    assert 'build-backend = "setuptools.build_meta"' in text


def test_the_license_is_mit_and_declared():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "setup.cfg")
    assert metadata["metadata"]["license_expression"] == "MIT"
    assert metadata["metadata"]["license_files"] == "LICENSE"
    assert metadata["metadata"]["author"]


def test_the_sdist_takes_the_tests_docs_and_bench_whole():
    rules = (ROOT / "MANIFEST.in").read_text().split("\n")
    assert {"graft tests", "graft docs", "graft bench", "graft .ci"} <= set(rules)
    assert "prune docs/_build" in rules
