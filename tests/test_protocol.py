"""Request bodies, prompt flattening, input validation, and event decoding."""
import json
import uuid

import pytest

from fakegpt import StreamError
from fakegpt._protocol import ReplyDecoder, conversation_body, flatten_prompt, validate_messages, web_model
from fakegpt._sse import SSEDecoder
from fakegpt.emulator._render import Turn, render, split_words


# -- input ------------------------------------------------------------------
@pytest.mark.parametrize(
    "messages, error, text",
    [
        ("hi", TypeError, "must be a list"),
        ({"role": "user", "content": "hi"}, TypeError, "must be a list"),
        (None, TypeError, "not NoneType"),
        ([], ValueError, "empty"),
        (["hi"], TypeError, r"messages\[0\] must be a dict"),
        ([{"content": "hi"}], ValueError, r"messages\[0\] has no 'role'"),
        ([{"role": "user"}], ValueError, r"has no 'content'"),
        ([{"role": "user", "content": 5}], TypeError, r"\['content'\] must be a str, not int"),
        ([{"role": None, "content": "x"}], TypeError, r"\['role'\] must be a str"),
        ([{"role": " ", "content": "x"}], ValueError, "role'] is empty"),
        ([{"role": "user", "content": "a"}, {"role": "user"}], ValueError, r"messages\[1\]"),
    ],
)
def test_bad_messages_are_rejected_clearly(messages, error, text):
    with pytest.raises(error, match=text):
        validate_messages(messages)


def test_valid_messages_pass_through_as_a_list():
    messages = ({"role": "user", "content": "hi"},)
    assert validate_messages(messages) == [{"role": "user", "content": "hi"}]


def test_one_message_is_sent_verbatim():
    assert flatten_prompt([{"role": "user", "content": "  Hi\nthere "}]) == "  Hi\nthere "


def test_several_messages_are_flattened_like_the_original():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "ASSISTANT", "content": "Hello"},
        {"role": "user", "content": "again"},
    ]
    assert flatten_prompt(messages) == "System: Be brief.\nUser: hi\nAssistant: Hello\nUser: again\nAssistant:"


@pytest.mark.parametrize(
    "model, slug",
    [
        ("gpt-3.5-turbo", "text-davinci-002-render-sha"),
        (None, "text-davinci-002-render-sha"),
        ("", "text-davinci-002-render-sha"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("text-davinci-002-render-sha", "text-davinci-002-render-sha"),
    ],
)
def test_model_mapping(model, slug):
    assert web_model(model) == slug


def test_model_of_wrong_type():
    with pytest.raises(TypeError, match="model must be a str"):
        web_model(3)


def test_one_shot_body_is_exactly_the_documented_shape():
    body = conversation_body("hello", "gpt-3.5-turbo")
    message = body["messages"][0]
    uuid.UUID(message["id"])
    uuid.UUID(body["parent_message_id"])
    assert message["id"] != body["parent_message_id"]
    assert body == {
        "action": "next",
        "messages": [
            {
                "id": message["id"],
                "author": {"role": "user"},
                "content": {"content_type": "text", "parts": ["hello"]},
                "metadata": {},
            }
        ],
        "parent_message_id": body["parent_message_id"],
        "model": "text-davinci-002-render-sha",
        "plugin_ids": [],
        "timezone_offset_min": -120,
        "suggestions": [],
        "history_and_training_disabled": True,
        "arkose_token": "",
        "force_paragen": False,
    }
    assert conversation_body("x", "gpt-3.5-turbo")["parent_message_id"] != body["parent_message_id"]


def test_body_inside_a_conversation_keeps_history_and_continue_has_no_message():
    body = conversation_body("more", "gpt-4o-mini", conversation_id="c1", parent_message_id="m1")
    assert (body["conversation_id"], body["parent_message_id"]) == ("c1", "m1")
    assert body["history_and_training_disabled"] is False and body["model"] == "gpt-4o-mini"
    cont = conversation_body(None, "gpt-3.5-turbo", action="continue", conversation_id="c1", parent_message_id="m2")
    assert cont["action"] == "continue" and "messages" not in cont
    assert cont["history_and_training_disabled"] is False


# -- decoding ---------------------------------------------------------------
def decode(raw: bytes, decoder=None):
    decoder = decoder or ReplyDecoder()
    sse = SSEDecoder()
    deltas = []
    for event, data in sse.feed(raw) + sse.close():
        delta = decoder.feed(event, data)
        if delta:
            deltas.append(delta)
        if decoder.done:
            break
    return deltas, decoder


def envelope(role, text, *, status="in_progress", mid="m1", recipient="all", finish=None, message_type="next"):
    metadata = {"message_type": message_type, "model_slug": "text-davinci-002-render-sha"}
    if finish:
        metadata["finish_details"] = {"type": finish}
    message = {
        "id": mid,
        "author": {"role": role, "name": None, "metadata": {}},
        "content": {"content_type": "text", "parts": [text]},
        "status": status,
        "end_turn": True if status == "finished_successfully" and role == "assistant" else None,
        "metadata": metadata,
        "recipient": recipient,
    }
    return b"data: " + json.dumps({"message": message, "conversation_id": "c1", "error": None}).encode() + b"\n\n"


def test_cumulative_stream_yields_only_new_assistant_text():
    raw = (
        envelope("system", "", status="finished_successfully", mid="s")
        + envelope("user", "Say hello", status="finished_successfully", mid="u", message_type="next")
        + b'data: {"conversation_id": "c1", "message_id": "u", "is_completion": false, "moderation_response": {}}\n\n'
        + b": ping - 2024-01-01 00:00:00\n\n"
        + envelope("assistant", "Hello")
        + envelope("assistant", "Hello")  # a repeat adds nothing
        + envelope("assistant", "Hello! How")
        + b"event: ping\ndata: {}\n\n"
        + envelope("assistant", "Hello! How are you?")
        + envelope("assistant", "Hello! How are you?", status="finished_successfully", finish="stop")
        + b"data: [DONE]\n\n"
        + envelope("assistant", "Hello! How are you? IGNORED")
    )
    deltas, decoder = decode(raw)
    assert deltas == ["Hello", "! How", " are you?"]
    assert decoder.done and decoder.finished and decoder.text == "Hello! How are you?"
    assert (decoder.conversation_id, decoder.message_id, decoder.model, decoder.finish_reason) == (
        "c1", "m1", "text-davinci-002-render-sha", "stop")


def test_tool_calls_and_the_user_echo_are_not_reply_text():
    raw = envelope("user", "echo", mid="u") + envelope("assistant", "search(x)", recipient="browser", mid="t")
    raw += envelope("tool", "results", mid="r") + envelope("assistant", "Answer", mid="a")
    assert decode(raw)[0] == ["Answer"]


def test_in_stream_error_raises_stream_error_with_its_text():
    raw = envelope("assistant", "Part") + b'data: {"message": null, "conversation_id": "c1", "error": "Something went wrong"}\n\n'
    decoder = ReplyDecoder()
    sse = SSEDecoder()
    events = sse.feed(raw)
    assert decoder.feed(*events[0]) == "Part"
    with pytest.raises(StreamError, match="Something went wrong"):
        decoder.feed(*events[1])
    assert decoder.text == "Part"


@pytest.mark.parametrize(
    "raw, text",
    [
        (b'data: {"error": {"message": "model overloaded", "code": "x"}}\n\n', "model overloaded"),
        (b"event: error\ndata: upstream failed\n\n", "upstream failed"),
        (b'event: error\ndata: {"detail": "nope"}\n\n', "nope"),
    ],
)
def test_other_error_shapes(raw, text):
    with pytest.raises(StreamError, match=text):
        decode(raw)


def test_unreadable_event_is_a_stream_error():
    with pytest.raises(StreamError, match="unreadable event"):
        decode(b"data: {not json\n\n")
    with pytest.raises(StreamError, match="unreadable event"):
        decode(b"data: \xff\xfe\n\n")
    for extra in (b'data: {"v": "a"} junk\n\n', b'data: {"v": "a"}{"v": "b"}\n\n', b'data: {"v": "a"}\x0c\x0c.\n\n'):
        with pytest.raises(StreamError, match="unreadable event") as info:
            decode(extra)
        assert isinstance(info.value.__cause__, ValueError)


def test_json_white_space_after_an_event_object_is_allowed():
    deltas, _ = decode(envelope("assistant", "Hi")[:-2] + b"\ndata:\n\n")  # the data is the object and "\n"
    assert deltas == ["Hi"]


def test_resume_yields_only_what_a_continuation_adds():
    deltas, decoder = decode(envelope("assistant", "One two three four"), ReplyDecoder(resume={"m1": "One two"}))
    assert deltas == [" three four"] and decoder.text == " three four"


V1_EXAMPLE = b"""event: delta_encoding
data: "v1"

event: delta
data: {"p": "", "o": "add", "v": {"message": {"id": "u1", "author": {"role": "user"}, "content": {"content_type": "text", "parts": ["hi"]}, "status": "finished_successfully", "metadata": {}, "recipient": "all"}, "conversation_id": "c1", "error": null}, "c": 0}

event: delta
data: {"v": {"message": {"id": "m1", "author": {"role": "assistant", "name": null, "metadata": {}}, "content": {"content_type": "text", "parts": [""]}, "status": "in_progress", "end_turn": null, "metadata": {"model_slug": "gpt-4o-mini"}, "recipient": "all"}, "conversation_id": "c1", "error": null}, "c": 1}

event: delta
data: {"p": "/message/content/parts/0", "o": "append", "v": "Hel"}

event: delta
data: {"v": "lo"}

event: ping
data: {}

event: delta
data: {"p": "", "o": "patch", "v": [{"p": "/message/content/parts/0", "o": "append", "v": "!"}, {"p": "/message/status", "o": "replace", "v": "finished_successfully"}, {"p": "/message/end_turn", "o": "replace", "v": true}, {"p": "/message/metadata", "o": "append", "v": {"finish_details": {"type": "stop"}}}]}

data: {"type": "message_stream_complete", "conversation_id": "c1"}

data: {"type": "title_generation", "title": "Greeting", "conversation_id": "c1"}

data: [DONE]

"""


def test_delta_encoding_v1_example_from_the_protocol():
    deltas, decoder = decode(V1_EXAMPLE)
    assert deltas == ["Hel", "lo", "!"]
    assert decoder.done and decoder.finished
    assert (decoder.conversation_id, decoder.message_id, decoder.model, decoder.finish_reason) == (
        "c1", "m1", "gpt-4o-mini", "stop")


def test_v1_replace_truncate_and_a_second_message_on_another_channel():
    ops = [
        {"p": "", "o": "add", "v": {"message": {"id": "a", "author": {"role": "assistant"},
                                                "content": {"parts": ["Hi"]}}}, "c": 0},
        {"p": "/message/content/parts/0", "o": "append", "v": " there"},
        {"p": "/message/content/parts/0", "o": "truncate", "v": 2},  # text shrinks: nothing new
        {"v": " again"},  # sticky op after truncate is truncate: ignored safely
        {"p": "/message/content/parts/0", "o": "replace", "v": "Hi there, friend"},
        {"v": {"message": {"id": "b", "author": {"role": "assistant"}, "content": {"parts": ["Second"]}}}, "c": 1},
        {"p": "/message/content/parts/0", "o": "append", "v": " part"},
        {"v": {"bad": "doc"}, "c": 5},  # no message: ignored
        {"p": "/message/nope/deep", "o": "replace", "v": 1},  # a path that does not exist: ignored
    ]
    raw = b"".join(b"event: delta\ndata: " + json.dumps(op).encode() + b"\n\n" for op in ops)
    deltas, decoder = decode(raw)
    assert deltas == ["Hi", " there", ", friend", "Second", " part"]
    assert decoder.message_id == "b"


def test_v1_detected_without_the_announcement_or_event_names():
    raw = (b'data: {"p": "", "o": "add", "v": {"message": {"id": "a", "author": {"role": "assistant"}, '
           b'"content": {"parts": [""]}}}}\n\ndata: {"p": "/message/content/parts/0", "o": "append", "v": "x"}\n\n'
           b'data: {"v": "y"}\n\ndata: [DONE]\n\n')
    assert decode(raw)[0] == ["x", "y"]


def test_v1_error_document():
    raw = b'event: delta\ndata: {"p": "", "o": "add", "v": {"message": null, "conversation_id": "c", "error": "boom"}}\n\n'
    with pytest.raises(StreamError, match="boom"):
        decode(raw)


@pytest.mark.parametrize("fmt", ["cumulative", "v1"])
@pytest.mark.parametrize("text", ["Hello, world!", "One", "Ünïcödé \u2028 line sep and 😀 emoji", ""])
def test_emulator_frames_decode_to_the_reply(fmt, text):
    turn = Turn(conversation_id="c9", user_message_id="u9", user_text="prompt", assistant_id="a9",
                model="gpt-4o-mini", words=split_words(text))
    raw = b"".join(frame for _, frame in render(turn, fmt))
    deltas, decoder = decode(raw)
    assert "".join(deltas) == text and all(deltas)
    assert decoder.done and decoder.finished and decoder.conversation_id == "c9"
    assert decoder.finish_reason == "stop" and decoder.model == "gpt-4o-mini"


@pytest.mark.parametrize("fmt", ["cumulative", "v1"])
def test_a_long_reply_keeps_its_text_not_a_string_per_delta(fmt):
    words = [f"w{i} " for i in range(3000)] + ["😀"]
    turn = Turn(conversation_id="c9", user_message_id="u9", user_text="prompt", assistant_id="a9",
                model="gpt-4o-mini", words=words)
    raw = b"".join(frame for _, frame in render(turn, fmt))
    deltas, decoder = decode(raw)
    assert "".join(deltas) == decoder.text == "".join(words) and len(deltas) == len(words)
    assert len(decoder.parts) < 300  # joined runs of 256 deltas, and the last run
    assert len(decoder._queued) < 300


@pytest.mark.parametrize(
    "event",
    [
        {"message": {"id": "m", "author": {"role": "assistant"}, "content": {"parts": {"a": 1}}}},
        {"message": {"id": "m", "author": {"role": "assistant"}, "content": {"parts": 5}}},
        {"message": {"id": "m", "author": {"role": "assistant"}, "content": {"parts": []}}},
        {"message": {"id": ["x"], "author": {"role": "assistant"}, "content": {"parts": ["hi"]}}},
        {"message": {"id": "m", "author": "assistant", "content": "hi", "metadata": [1]}},
        {"message": {"id": "m", "author": {"role": "assistant"}, "content": {"parts": ["a"]}, "metadata": {
            "finish_details": "stop"}}},
        {"p": "", "o": "add", "v": {"message": {"id": "m", "author": {"role": "assistant"},
                                                "content": {"parts": ["a"]}}}, "c": []},
        {"p": 5, "o": "append", "v": "x"},
        {"p": "/message/content/parts/0", "o": ["append"], "v": "x"},
        {"o": "patch", "v": [{"p": "/a/~/b", "o": "append", "v": 1}, "junk", {"p": None}]},
    ],
)
def test_malformed_events_never_raise_anything_but_stream_error(event):
    decoder = ReplyDecoder()
    data = json.dumps(event).encode()
    try:
        decoder.feed("delta" if "p" in event or "o" in event else "message", data)
    except StreamError:
        pass
    # Whatever was decoded, the decoder is still usable.
    decoder.feed("message", b"[DONE]")
    assert decoder.done


def test_deeply_nested_json_is_a_stream_error():
    with pytest.raises(StreamError, match="unreadable event"):
        ReplyDecoder().feed("message", b"[" * 100000 + b"]" * 100000)


# -- surrogate pairs cut between events ----------------------------------------------------
def utf16_pieces(text, cut):
    """*text* as a JavaScript or Go proxy may slice it: UTF-16 code units, cut at *cut*."""
    units = text.encode("utf-16-le")
    return [units[:2 * cut].decode("utf-16-le", "surrogatepass"), units[2 * cut:].decode("utf-16-le", "surrogatepass")]


def proxy_json(value):
    """JSON as JavaScript's JSON.stringify writes a lone surrogate: an escape."""
    return json.dumps(value)  # (ensure_ascii escapes every surrogate as \\udxxx)


def cumulative_frames(pieces, finish=True):
    frames, text = [], ""
    for piece in pieces:
        text += piece
        message = {"id": "m1", "author": {"role": "assistant"}, "content": {"parts": [text]}, "status": "in_progress"}
        frames.append(b"data: " + proxy_json({"message": message, "conversation_id": "c1", "error": None}).encode())
    if finish:
        message = {"id": "m1", "author": {"role": "assistant"}, "content": {"parts": [text]},
                   "status": "finished_successfully", "end_turn": True}
        frames.append(b"data: " + proxy_json({"message": message, "conversation_id": "c1"}).encode())
    return b"\n\n".join(frames) + b"\n\ndata: [DONE]\n\n"


def v1_frames(pieces, bare=True):
    """Format B appending *pieces*: the first op in full, the others bare ``{"v"}``
    (the decoder's fast path) or, with *bare* false, each in full."""
    frames = [b'event: delta\ndata: {"p": "", "o": "add", "v": {"message": {"id": "m1", "author": {"role": '
              b'"assistant"}, "content": {"parts": [""]}}, "conversation_id": "c1"}}']
    for n, piece in enumerate(pieces):
        op = {"v": piece} if n and bare else {"p": "/message/content/parts/0", "o": "append", "v": piece}
        frames.append(b"event: delta\ndata: " + proxy_json(op).encode())
    return b"\n\n".join(frames) + b"\n\ndata: [DONE]\n\n"


TEXT = "Hi 😀 there 👋🏽!"


@pytest.mark.parametrize("fmt", ["cumulative", "v1", "v1-explicit"])
def test_a_surrogate_pair_cut_between_two_events_is_joined(fmt):
    for cut in range(len(TEXT.encode("utf-16-le")) // 2 + 1):
        pieces = utf16_pieces(TEXT, cut)
        raw = cumulative_frames(pieces) if fmt == "cumulative" else v1_frames(["Hi"] + pieces, fmt == "v1")
        deltas, decoder = decode(raw)
        expected = TEXT if fmt == "cumulative" else "Hi" + TEXT
        assert "".join(deltas) == expected == decoder.text, f"cut at {cut}"
        for delta in deltas:
            delta.encode("utf-8")  # strict: a lone surrogate would raise here


def test_a_high_half_at_the_end_becomes_a_replacement_character():
    raw = b'event: delta\ndata: {"p": "", "o": "add", "v": {"message": {"id": "m1", "author": {"role": "assistant"}, ' \
          b'"content": {"parts": [""]}}}}\n\nevent: delta\ndata: {"p": "/message/content/parts/0", "o": "append", ' \
          b'"v": "x\\ud83d"}\n\n'
    decoder = ReplyDecoder()
    sse = SSEDecoder()
    out = [decoder.feed(event, data) for event, data in sse.feed(raw)]
    assert "".join(out) == "x" and decoder.text == "x"  # held back, awaiting its pair
    assert decoder.feed("message", b"[DONE]") == "\ufffd" and decoder.text == "x\ufffd"
    assert decoder.flush() == ""


@pytest.mark.parametrize("text", ["a\ude00b", "a\ud83db", "\ude00\ud83d\ud83d\ude00"])
def test_a_lone_half_inside_the_text_becomes_a_replacement_character(text):
    deltas, decoder = decode(cumulative_frames([text]))
    assert decoder.text == text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    assert "\ufffd" in decoder.text and all(d.encode("utf-8") for d in deltas)


def test_a_finished_message_ending_in_a_high_half_ends_with_a_replacement_character():
    deltas, decoder = decode(cumulative_frames(["ok \ud83d"]))
    assert deltas == ["ok ", "\ufffd"] and decoder.text == "ok \ufffd"


def test_a_held_half_of_one_message_is_not_joined_with_the_next_message():
    first = envelope("assistant", "one \ud83d", mid="a")
    second = envelope("assistant", "\ude00two", mid="b")
    deltas, decoder = decode(first + second)
    assert decoder.text == "one \ufffd\ufffdtwo"


def test_a_resumed_message_counts_a_held_half_as_not_delivered():
    decoder = ReplyDecoder(resume={"m1": "Hi "})
    deltas, _ = decode(cumulative_frames(["Hi \ud83d", "\ude00"]), decoder)
    assert "".join(deltas) == "😀"


# -- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    b"event: error\ndata: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n",
    b'data: {"error": ' + b"[" * 990 + b"]" * 990 + b"}\n\n",
    b'data: {"message": null, "error": ' + b'{"detail": ' * 900 + b"1" + b"}" * 900 + b"}\n\n",
    b'event: error\ndata: {"message": ' + b"[" * 990 + b"]" * 990 + b"}\n\n",
])
def test_error_events_nested_without_end_are_stream_errors(raw):
    with pytest.raises(StreamError) as info:
        decode(raw)
    assert type(info.value) is StreamError and len(str(info.value)) <= 300
    assert not isinstance(info.value.__cause__, RecursionError)


def test_an_in_stream_error_echoing_a_registered_token_shows_no_part_of_it():
    from fakegpt._secrets import register_secret

    class Holder:
        pass

    token, holder = "eyJhbGciOiJSUzI1NiJ9." + "Zm9v" * 245, Holder()
    register_secret(holder, token)
    for raw in (b'data: {"message": null, "error": "bad token ' + token.encode() + b'"}\n\n',
                b"event: error\ndata: token " + token.encode() + b" rejected\n\n",
                b"data: {not json " + token.encode() + b"\n\n"):
        with pytest.raises(StreamError) as info:
            decode(raw)
        assert [token[i:i + 8] for i in range(len(token) - 7) if token[i:i + 8] in str(info.value)] == []
