"""The watchdog's timers (fakegpt._watchdog.start_timer / cancel_timer)."""
import threading

from fakegpt._watchdog import cancel_timer, start_timer


def test_a_timer_runs_its_action_once_and_cancel_then_says_it_was_too_late():
    fired = threading.Event()
    runs = []

    def action():
        runs.append(1)
        fired.set()

    timer = start_timer(0.0, action)
    assert fired.wait(10)
    assert cancel_timer(timer) is True and runs == [1]


def test_cancel_says_truly_whether_the_action_ran_however_close_the_race():
    for _ in range(20):
        ran = threading.Event()
        timer = start_timer(0.0, ran.set)  # due at once: the watchdog's thread races the cancel
        too_late = cancel_timer(timer)
        marker = threading.Event()
        start_timer(0.0, marker.set)  # once a later timer fired, the first had every chance
        assert marker.wait(10)
        assert ran.is_set() is too_late


def test_timers_are_independent():
    first, second = threading.Event(), threading.Event()
    kept = start_timer(3600.0, first.set)
    start_timer(0.0, second.set)
    assert second.wait(10) and not first.is_set()
    assert cancel_timer(kept) is False
