"""What a public call raises: a fakegpt error with a short traceback, or bad input before any request."""
import os
import socket
import threading
import traceback

import pytest
import requests

import fakegpt
from fakegpt.emulator import Emulator

MESSAGES = [{"role": "user", "content": "Hi"}]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_has_a_short_traceback_and_keeps_the_underlying_error():
    with fakegpt.Client(f"http://127.0.0.1:{free_port()}", max_retries=0) as client:
        with pytest.raises(fakegpt.APIConnectionError) as info:
            client.complete(MESSAGES)
    error = info.value
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for library in ("urllib3", "requests", "tenacity", "http" + os.sep + "client"):
        assert f"{os.sep}{library}{os.sep}" not in text and f"{os.sep}{library}.py" not in text, text
    assert "The above exception" not in text and "During handling" not in text, text
    assert len(text) < 2000, text
    assert str(error) in text
    # The underlying error is kept, with its own traceback, for whoever wants it.
    assert isinstance(error.cause, requests.exceptions.ConnectionError)
    assert error.cause.__traceback__ is not None and error.cause.request is None


BAD_HOSTS = ["http://" + "a" * 64 + ".example", "http://a..example", "http://" + "é" * 70 + ".example"]


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_a_host_name_urllib3_cannot_parse_is_a_value_error_before_any_request(url):
    with pytest.raises(ValueError, match="bad host name"):
        fakegpt.Client(url)
    with pytest.raises(ValueError, match="bad host name"):
        fakegpt.Client("http://127.0.0.1:9", proxy="http://" + "p" * 64 + ".example:8080")


def test_a_63_character_label_is_fine():
    with Emulator() as emulator:
        url = emulator.url.replace("127.0.0.1", "a" * 63 + ".localhost")
        assert fakegpt.Client(url).base_url == url  # accepted (not contacted: *.localhost may not resolve)


def test_closing_the_client_during_a_login_ends_the_call_without_a_value_error():
    with Emulator() as emulator:
        client = fakegpt.Client(emulator.url, max_retries=0)
        real_send, closed = client._login_send, []

        def send(method, path, **kwargs):
            answer = real_send(method, path, **kwargs)
            if not closed:  # after the first request of the login, another thread closes the client
                closer = threading.Thread(target=client.close)
                closer.start()
                closer.join(30)
                closed.append(True)
            return answer

        client._login_send = send
        client._login._send = send
        reply = client.complete(MESSAGES)  # no ValueError("this Client is closed") from inside the call
        assert reply == "" and closed
        assert emulator.counts["conversations"] == 0 and emulator.counts["logins"] == 0


def test_an_error_that_is_not_a_fakegpt_error_does_not_escape_a_call():
    # A Retry-After date with a year far beyond datetime's range (OverflowError while it was parsed).
    with Emulator() as emulator, fakegpt.Client(emulator.url, max_retries=0) as client:
        emulator.fail_next(503, headers={"Retry-After": "Fri, 31 Dec 99999999999999999999 23:59:59 GMT"})
        with pytest.raises(fakegpt.FakeGptError) as info:
            client.complete(MESSAGES)
    assert info.value.__cause__ is None and "Traceback" not in str(info.value)
