"""The fakegpt_emulator fixture reaches other test suites through the pytest11 entry point."""
from importlib.metadata import entry_points

pytest_plugins = ["pytester"]


def test_entry_point_is_registered():
    found = entry_points().select(group="pytest11") if hasattr(entry_points(), "select") else entry_points()["pytest11"]
    assert "fakegpt.pytest_plugin" in {ep.value for ep in found}


def test_a_user_suite_gets_the_fixture_and_can_set_its_options(pytester):
    pytester.makepyfile(
        """
        import pytest
        import fakegpt

        def test_default(fakegpt_emulator):
            with fakegpt.Client(fakegpt_emulator.url) as client:
                assert client.complete([{"role": "user", "content": "hi"}]).startswith("Hello!")
            assert fakegpt_emulator.counts["logins"] == 1

        class TestOptions:
            @pytest.fixture
            def fakegpt_emulator_options(self):
                return {"format": "v1", "tokens": 1}

            def test_options(self, fakegpt_emulator):
                assert fakegpt_emulator.format == "v1" and len(fakegpt_emulator.tokens) == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
