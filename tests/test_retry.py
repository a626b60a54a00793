"""Which failures are retried, and how long the client waits."""
import email.utils
import ssl

import pytest
import requests
import urllib3

import fakegpt
from fakegpt._constants import INITIAL_BACKOFF, MAX_BACKOFF, MAX_RETRY_AFTER
from fakegpt._retry import backoff_seconds, is_retryable, make_retrying, retry_after_seconds


@pytest.mark.parametrize("value, seconds", [("3", 3.0), (" 0.5 ", 0.5), ("0", 0.0), (None, None),
                                            ("soon", None), ("", None), ("nan", None), ("inf", None)])
def test_retry_after_seconds(value, seconds):
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize("value", ["-4", "-0.5", " -1e9 "])
def test_a_negative_retry_after_is_ignored(value):
    assert retry_after_seconds(value) is None


@pytest.mark.parametrize("value", ["Fri, 31 Dec 999999999999 23:59:59 GMT", "Fri, 31 Dec 99999 23:59:59 GMT"])
def test_an_http_date_no_clock_can_hold_is_ignored_without_an_overflow(value):
    assert retry_after_seconds(value) is None


def test_a_503_with_a_date_of_a_huge_year_falls_back_to_the_backoff(server, client):
    server.rsps.get("https://chat.test/api/loads", status=503, body="busy",
                    headers={"Retry-After": "Fri, 31 Dec 999999999999 23:59:59 GMT"})
    server.logged_in()
    server.conversation()
    assert client.complete([{"role": "user", "content": "Hi"}]) == "Hello world"
    assert len(client.waits) == 1 and INITIAL_BACKOFF * 0.75 <= client.waits[0] <= INITIAL_BACKOFF


def test_a_negative_retry_after_falls_back_to_the_backoff(server, client):
    server.rsps.get("https://chat.test/api/loads", status=429, body="slow down", headers={"Retry-After": "-30"})
    server.logged_in()
    server.conversation()
    assert client.complete([{"role": "user", "content": "Hi"}]) == "Hello world"
    assert len(client.waits) == 1 and INITIAL_BACKOFF * 0.75 <= client.waits[0] <= INITIAL_BACKOFF


def test_retry_after_http_date():
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(date, now=1_000_000) == 30.0
    assert retry_after_seconds(date, now=1_000_100) == 0.0


def test_backoff_grows_is_capped_and_jittered():
    assert backoff_seconds(1, rand=lambda: 0.0) == INITIAL_BACKOFF
    assert backoff_seconds(2, rand=lambda: 0.0) == 2 * INITIAL_BACKOFF
    assert backoff_seconds(30, rand=lambda: 0.0) == MAX_BACKOFF
    assert INITIAL_BACKOFF * 0.75 <= backoff_seconds(1) <= INITIAL_BACKOFF


def _ssl_error():
    error = fakegpt.APIConnectionError("certificate verify failed")
    error.__cause__ = requests.exceptions.SSLError("bad cert")
    return error


def _proxy_ssl_error():
    """What requests raises for an https proxy whose certificate fails: the
    SSLError inside urllib3's ProxyError, inside MaxRetryError, inside requests' ProxyError."""
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    inner = urllib3.exceptions.ProxyError("Unable to connect to proxy", urllib3.exceptions.SSLError(verify))
    outer = requests.exceptions.ProxyError(urllib3.exceptions.MaxRetryError(None, "/", inner))
    error = fakegpt.APIConnectionError("could not use the proxy")
    error.__cause__ = outer
    return error


@pytest.mark.parametrize(
    "error, retry",
    [
        (fakegpt.APIConnectionError("refused"), True),
        (fakegpt.APITimeoutError("slow"), True),
        (fakegpt.RateLimitError("429", status_code=429), True),
        (fakegpt.RateLimitError("429", status_code=429, retry_after=MAX_RETRY_AFTER), True),
        (fakegpt.RateLimitError("429", status_code=429, retry_after=MAX_RETRY_AFTER + 1), False),
        (fakegpt.APIStatusError("500", status_code=500), True),
        (fakegpt.APIStatusError("503", status_code=503), True),
        (fakegpt.APIStatusError("400", status_code=400), False),
        (fakegpt.APIStatusError("404", status_code=404), False),
        (fakegpt.AuthenticationError("401", status_code=401), False),
        (fakegpt.StreamError("in-stream"), False),
        (fakegpt.IncompleteStreamError("cut"), False),
        (fakegpt.NoValidResponseError("empty"), False),
        (_ssl_error(), False),
        (_proxy_ssl_error(), False),
        (ValueError("a bug"), False),
    ],
)
def test_is_retryable(error, retry):
    assert is_retryable(error) is retry


def test_retrying_waits_retry_after_then_backoff_and_reraises_the_last_error():
    waits = []
    errors = [
        fakegpt.RateLimitError("one", status_code=429, retry_after=1.5),
        fakegpt.APIStatusError("two", status_code=502),
        fakegpt.APIStatusError("three", status_code=503),
    ]

    def fail():
        raise errors.pop(0)

    with pytest.raises(fakegpt.APIStatusError, match="three"):
        make_retrying(2, sleep=waits.append)(fail)
    assert waits[0] == 1.5 and INITIAL_BACKOFF * 1.5 <= waits[1] <= 2 * INITIAL_BACKOFF
    assert errors == []


def test_retrying_stops_at_once_on_a_final_error():
    waits, calls = [], []

    def fail():
        calls.append(1)
        raise fakegpt.APIStatusError("bad request", status_code=400)

    with pytest.raises(fakegpt.APIStatusError):
        make_retrying(5, sleep=waits.append)(fail)
    assert calls == [1] and waits == []


def test_zero_retries_means_one_try():
    calls = []

    def fail():
        calls.append(1)
        raise fakegpt.APIConnectionError("down")

    with pytest.raises(fakegpt.APIConnectionError):
        make_retrying(0, sleep=lambda s: None)(fail)
    assert calls == [1]


def test_retry_after_is_honoured_on_503_and_capped():
    waits = []
    errors = [fakegpt.APIStatusError("busy", status_code=503, retry_after=3.0),
              fakegpt.APIStatusError("busy", status_code=503, retry_after=0.5)]

    def fail():
        if errors:
            raise errors.pop(0)
        return "ok"

    assert make_retrying(2, sleep=waits.append)(fail) == "ok" and waits == [3.0, 0.5]
    assert is_retryable(fakegpt.APIStatusError("busy", status_code=503, retry_after=MAX_RETRY_AFTER))
    assert not is_retryable(fakegpt.APIStatusError("busy", status_code=503, retry_after=MAX_RETRY_AFTER + 1))
    assert not is_retryable(fakegpt.APIStatusError("no", status_code=404, retry_after=1.0))


def test_wait_seconds_never_exceeds_the_cap():
    from fakegpt._retry import wait_seconds

    assert wait_seconds(fakegpt.RateLimitError("r", status_code=429, retry_after=1e9), 1) == MAX_RETRY_AFTER
    assert wait_seconds(fakegpt.APIStatusError("s", status_code=503, retry_after=2.0), 1) == 2.0
    assert INITIAL_BACKOFF * 0.75 <= wait_seconds(fakegpt.APIConnectionError("c"), 1) <= INITIAL_BACKOFF


def test_a_503_retry_after_is_waited_out_by_the_client(server, client):
    server.rsps.get("https://chat.test/api/loads", status=503, body="maintenance", headers={"Retry-After": "2"})
    server.logged_in()
    server.conversation()
    assert client.complete([{"role": "user", "content": "Hi"}]) == "Hello world"
    assert client.waits == [2.0]


def test_a_503_asking_for_too_long_is_raised_at_once_with_its_retry_after(server, client):
    server.rsps.get("https://chat.test/api/loads", status=503, body="down", headers={"Retry-After": "3600"})
    with pytest.raises(fakegpt.APIStatusError, match=r"HTTP 503: down \(retry after 3600s\)") as info:
        client.complete([{"role": "user", "content": "Hi"}])
    assert info.value.retry_after == 3600.0 and client.waits == [] and len(server.calls("/api/loads")) == 1
