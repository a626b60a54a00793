"""A pytest plugin (registered through the ``pytest11`` entry point) that
gives every test suite a ``fakegpt_emulator`` fixture::

    def test_my_bot(fakegpt_emulator):
        fakegpt_emulator.fail_next(429, headers={"Retry-After": "0"})
        assert my_bot.ask("hi", base_url=fakegpt_emulator.url).startswith("Hello")

Each test gets a fresh emulator on a free loopback port, stopped afterwards.
Options go through the ``fakegpt_emulator_options`` fixture, which a test
module can override::

    @pytest.fixture
    def fakegpt_emulator_options():
        return {"format": "v1", "delay": 0.01}
"""
from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest

from .emulator import Emulator


@pytest.fixture
def fakegpt_emulator_options() -> Dict[str, Any]:
    """Keyword arguments for :class:`fakegpt.emulator.Emulator` (override to change them)."""
    return {}


@pytest.fixture
def fakegpt_emulator(fakegpt_emulator_options: Dict[str, Any]) -> Iterator[Emulator]:
    """A running emulator; ``.url`` is its address."""
    with Emulator(**fakegpt_emulator_options) as emulator:
        yield emulator
