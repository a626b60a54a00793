"""The error tree and the status → error mapping."""
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
