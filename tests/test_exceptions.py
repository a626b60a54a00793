"""The error tree and the status → error mapping."""
import traceback

import pytest

import fakegpt
from fakegpt.exceptions import detail_from_body, error_for_status, is_rate_limit, one_line, redact

ALL_ERRORS = [
    fakegpt.FakeGptError,
    fakegpt.AuthenticationError,
    fakegpt.APIStatusError,
    fakegpt.RateLimitError,
    fakegpt.APIConnectionError,
    fakegpt.APITimeoutError,
    fakegpt.StreamError,
    fakegpt.IncompleteStreamError,
    fakegpt.NoValidResponseError,
]


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_every_error_is_a_runtime_error_for_code_written_for_the_original(cls):
    assert issubclass(cls, fakegpt.FakeGptError) and issubclass(cls, RuntimeError)
    assert cls.__module__ == "fakegpt"


def test_the_tree():
    assert issubclass(fakegpt.RateLimitError, fakegpt.APIStatusError)
    assert issubclass(fakegpt.APITimeoutError, fakegpt.APIConnectionError)
    assert issubclass(fakegpt.IncompleteStreamError, fakegpt.StreamError)
    assert not issubclass(fakegpt.NoValidResponseError, fakegpt.StreamError)


def test_messages_are_one_line_and_bounded():
    error = fakegpt.StreamError("first\nsecond\r\n\tthird " + "x" * 1000)
    assert "\n" not in str(error) and str(error).startswith("first second third")
    assert len(str(error)) <= 300 and error.partial_text == ""
    assert one_line("a\u2028b") == "a b"


@pytest.mark.parametrize(
    "status, body, content_type, cls, fragment",
    [
        (429, b'{"detail": "Too many requests in 1 hour. Try again later."}', "application/json",
         fakegpt.RateLimitError, "Too many requests"),
        (400, b'{"detail": "Too many requests in 1 hour. Try again later."}', "", fakegpt.RateLimitError, "HTTP 400"),
        (403, b'{"detail": "Only one message at a time. Please allow any other responses to complete."}', "",
         fakegpt.RateLimitError, "Only one message"),
        (400, b'{"detail": {"code": "rate_limit_exceeded", "message": "slow down"}}', "", fakegpt.RateLimitError,
         "slow down"),
        (401, b'{"detail": {"code": "token_expired", "message": "expired"}}', "", fakegpt.AuthenticationError,
         "expired"),
        (403, b"<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>", "text/html",
         fakegpt.APIStatusError, "HTML page: Just a moment..."),
        (404, b'{"detail": "Conversation not found"}', "", fakegpt.APIStatusError, "Conversation not found"),
        (500, b"upstream\nexploded", "text/plain", fakegpt.APIStatusError, "upstream exploded"),
        (502, b"", "", fakegpt.APIStatusError, "HTTP 502"),
        (422, b'{"detail": [{"loc": ["body"], "msg": "field required"}]}', "", fakegpt.APIStatusError,
         "field required"),
    ],
)
def test_error_for_status(status, body, content_type, cls, fragment):
    error = error_for_status(status, body, content_type=content_type, what="POST /api/conversation")
    assert type(error) is cls
    assert fragment in str(error) and str(error).startswith("POST /api/conversation failed: HTTP")
    if isinstance(error, fakegpt.APIStatusError):
        assert error.status_code == status


def test_rate_limit_keeps_retry_after():
    error = error_for_status(429, b"{}", retry_after=2.5)
    assert error.retry_after == 2.5 and "retry after 2.5s" in str(error)
    assert error_for_status(429, b"{}").retry_after is None


def test_is_rate_limit_only_on_rate_limit_statuses():
    assert is_rate_limit(429, "")
    assert not is_rate_limit(500, "too many requests")


def test_detail_from_body_shapes():
    assert detail_from_body(b'{"error": {"message": "bad"}}') == "bad"
    assert detail_from_body(b'{"message": "m"}') == "m"
    assert detail_from_body(b'{"code": "c"}') == "c"
    assert detail_from_body(b"  ") == ""
    assert detail_from_body(b"<html><body>no title</body></html>").startswith("HTML page:")
    assert len(detail_from_body(b"x" * 5000)) <= 200


def test_redact_hides_secrets_in_message_and_detail():
    error = fakegpt.APIStatusError("token sekrit-token-123 was bad", status_code=400, detail="sekrit-token-123")
    redact(error, ["sekrit-token-123", None, ""])
    assert "sekrit" not in str(error) and error.detail == "***" and "***" in str(error)


def test_retry_after_is_kept_on_a_503_too():
    error = error_for_status(503, b'{"detail": "maintenance"}', retry_after=4.0, what="GET /api/loads")
    assert type(error) is fakegpt.APIStatusError and error.retry_after == 4.0
    assert str(error) == "GET /api/loads failed: HTTP 503: maintenance (retry after 4s)"
    assert error_for_status(503, b"").retry_after is None


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("body", [DEEP, b'{"detail": ' * 100_000 + b"1" + b"}" * 100_000,
                                  b'{"detail": ' + b"[" * 990 + b"]" * 990 + b"}"])
def test_json_nested_without_end_gives_an_error_not_a_recursion_error(body):
    error = error_for_status(500, body, content_type="application/json", what="POST /api/conversation")
    assert type(error) is fakegpt.APIStatusError and error.status_code == 500
    assert str(error).startswith("POST /api/conversation failed: HTTP 500: ") and len(str(error)) <= 300
    assert len(detail_from_body(body)) <= 200


def test_a_huge_body_is_read_only_as_far_as_needed():
    error = error_for_status(502, b"x" * (8 << 20), what="GET /api/loads")
    assert type(error) is fakegpt.APIStatusError and len(str(error)) <= 300


SECRET = "eyJhbGciOiJSUzI1NiJ9." + "Qk" * 490  # JWT-sized: about 1,000 characters


def leaked(text, secret=SECRET):
    """Any 8 characters in a row of *secret* found in *text*."""
    return [secret[i:i + 8] for i in range(len(secret) - 7) if secret[i:i + 8] in text]


@pytest.fixture
def registered():
    from fakegpt._secrets import register_secret

    class Holder:
        pass

    holder = Holder()
    register_secret(holder, SECRET)
    yield holder


@pytest.mark.parametrize("status", [401, 403, 500])
def test_an_echoed_token_is_hidden_before_the_message_is_cut(registered, status):
    body = b'{"detail": "the token ' + SECRET.encode() + b' is not valid here"}'
    error = error_for_status(status, body, what="POST /api/conversation")
    assert "***" in str(error)
    for text in (str(error), repr(error), getattr(error, "detail", "")):
        assert leaked(text) == []


def test_one_line_hides_secrets_before_it_cuts(registered):
    assert one_line("start " + SECRET + " end", 100) == "start *** end"
    assert leaked(one_line("x" * 250 + SECRET, 300)) == []
    # A secret already cut upstream (8 characters or more of its beginning) is hidden too.
    assert one_line("cut: " + SECRET[:20]) == "cut: ***"
    assert one_line("short: " + SECRET[:7]) == "short: " + SECRET[:7]


def test_redact_walks_the_chain_and_cuts_a_link_it_cannot_clean():
    secret = "hidden-secret-value-42"
    inner = OSError(2, "No such file", secret)  # the secret sits in an attribute, not in args
    middle = ValueError(f"wrapped {secret}")
    middle.__cause__ = inner
    outer = fakegpt.StreamError("outer")
    outer.__cause__ = middle
    outer.__context__ = KeyError(secret)
    assert redact(outer, [secret]) is outer
    chain, seen = [], outer
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert [type(e) for e in chain] == [fakegpt.StreamError, ValueError]  # the OSError was cut off
    assert str(middle) == "wrapped ***" and str(outer.__context__) == "'***'"


def test_redact_drops_the_request_a_requests_error_keeps():
    import requests

    prepared = requests.Request("POST", "http://h/x", headers={"Authorization": "Bearer tok-123456"}).prepare()
    cause = requests.exceptions.ConnectionError("refused", request=prepared)
    error = fakegpt.APIConnectionError("refused")
    error.__cause__ = cause
    redact(error)
    assert cause.request is None and error.__cause__ is cause


def test_the_detail_and_message_hide_bearer_values_and_url_credentials():
    error = error_for_status(400, b"rejected Authorization: Bearer abc.def.ghi from http://bob:pw1@proxy:3128/")
    assert "abc.def" not in str(error) and "bob:pw1" not in str(error)
    assert "Bearer ***" in error.detail and "http://***@proxy:3128/" in error.detail


def test_a_stream_lets_nothing_but_a_fakegpt_error_out_and_keeps_the_original_as_its_cause():
    from fakegpt._stream import Stream

    secret = "sk-" + "s3cr3t" * 4
    with fakegpt.Client("http://127.0.0.1:9", access_token=secret) as client:
        def failing(call):
            raise KeyError(f"no such thing as {secret}")
            yield  # pragma: no cover

        stream = Stream(client._engine.new_call(), failing)
        with pytest.raises(fakegpt.FakeGptError) as info:
            next(stream)
    error = info.value
    assert type(error) is fakegpt.FakeGptError and error.__cause__ is None and error.__suppress_context__
    assert str(error) == "the call failed unexpectedly: KeyError: 'no such thing as ***'"
    assert isinstance(error.cause, KeyError) and secret not in str(error.cause)
    frames = traceback.extract_tb(error.__traceback__)  # this test's, then where the stream raised it
    assert len(frames) == 2 and frames[-1].filename.endswith("_stream.py")


def test_a_fakegpt_error_leaves_a_stream_with_its_cause_kept_and_its_chain_cut():
    from fakegpt._stream import Stream

    inner = ConnectionResetError("reset")

    def failing(call):
        try:
            raise inner
        except OSError as error:
            raise fakegpt.APIConnectionError("POST failed") from error
        yield  # pragma: no cover

    with fakegpt.Client("http://127.0.0.1:9") as client:
        stream = Stream(client._engine.new_call(), failing)
        with pytest.raises(fakegpt.APIConnectionError) as info:
            next(stream)
    assert info.value.cause is inner and info.value.__cause__ is None
