"""The gpt4free drivers, each as a check that asserts the exact reply.

Each function returns ``[(entry, check), ...]``: *check* is a callable, or a
:class:`NotApplicable` (with the reason and a proof of it). Every check sends
its own prompt (entry and mode), so its reply is known exactly. *get* is a
zero-argument callable giving the provider argument for one call (the class,
its name, or a fresh retry provider: g4f filters a retry list in place).
"""
import asyncio

from _common import expected, messages, raises

MODEL = "gpt-3.5-turbo"

CLIENT_ENTRIES = [
    f"{client}{where}{stream}"
    for client in ("Client", "AsyncClient")
    for where in ("(provider=FakeGpt).chat.completions.create", "().chat.completions.create(provider=FakeGpt)")
    for stream in ("", " stream=True")
]


class NotApplicable:
    """An entry point the version lacks: *proof()* shows it (raises if it does not)."""

    def __init__(self, reason, proof):
        self.reason, self.proof = reason, proof


def check_text_stream(chunks, prompt, own):
    """The text chunks of a driver's stream: exact, really streamed; *own*: nothing but ``str``."""
    texts = [chunk for chunk in chunks if isinstance(chunk, str)]
    others = [chunk for chunk in chunks if not isinstance(chunk, str)]
    if own:
        assert not others, f"non-str chunks: {others!r}"
    else:  # a retry provider adds g4f's own ProviderInfo objects: none of fakegpt's
        assert all(type(chunk).__module__.startswith("g4f.") for chunk in others), others
    assert "".join(texts) == expected(prompt), "".join(texts)
    assert len([text for text in texts if text]) > 3, texts


def check_completion(reply, prompt, names):
    assert reply.choices[0].message.content == expected(prompt), reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop", reply.choices[0].finish_reason
    assert reply.provider in names, reply.provider


def check_chunks(chunks, prompt, names):
    contents = [chunk.choices[0].delta.content for chunk in chunks]
    assert contents[-1] is None and chunks[-1].choices[0].finish_reason == "stop", contents[-1:]
    assert all(isinstance(content, str) for content in contents[:-1]), contents
    assert "".join(contents[:-1]) == expected(prompt), "".join(contents[:-1])
    assert len(contents) > 4, contents
    assert all(chunk.provider in names for chunk in chunks[:-1]), {chunk.provider for chunk in chunks}


def chat_completion(g4f, get, by, own=True, label="", **options):
    """ChatCompletion.create / create_async, plain and stream=True (with *options*)."""
    def prompt(entry):
        return f"{entry}{label} [{by}]"

    def create():
        p = prompt("create")
        assert g4f.ChatCompletion.create(model=MODEL, messages=messages(p), provider=get(), **options) == expected(p)

    def create_stream():
        p = prompt("create stream")
        result = g4f.ChatCompletion.create(model=MODEL, messages=messages(p), provider=get(), stream=True, **options)
        check_text_stream(list(result), p, own)

    def create_async():
        p = prompt("create_async")
        text = asyncio.run(g4f.ChatCompletion.create_async(model=MODEL, messages=messages(p), provider=get(), **options))
        assert text == expected(p), text

    def create_async_stream():
        p = prompt("create_async stream")

        async def collect():
            result = g4f.ChatCompletion.create_async(model=MODEL, messages=messages(p), provider=get(), stream=True, **options)
            return [chunk async for chunk in result]
        check_text_stream(asyncio.run(collect()), p, own)

    return [
        (f"ChatCompletion.create{label}", create),
        (f"ChatCompletion.create(stream=True){label}", create_stream),
        (f"await ChatCompletion.create_async{label}", create_async),
        (f"ChatCompletion.create_async(stream=True){label}", create_async_stream),
    ]


def clients(get, version, by, label="", entries=CLIENT_ENTRIES):
    """g4f.client.Client and AsyncClient: provider given to the client or per call, stream False/True."""
    from g4f.client import AsyncClient, Client

    checks = []
    for entry in entries:
        factory = AsyncClient if entry.startswith("Async") else Client
        per_call, stream = "().chat" in entry, entry.endswith("stream=True")
        # 8.x's sync Client names no provider in its replies, whatever the provider: its
        # iter_response() sets its provider_info parameter to None before reading it.
        names = {"FakeGpt", None} if version >= (8, 0) and factory is Client else {"FakeGpt"}
        checks.append((entry + label, _client_check(factory, get, per_call, stream, f"{entry}{label} [{by}]", names)))
    return checks


def _client_check(factory, get, per_call, stream, prompt, names):
    def completions():
        provider = get()
        client = factory() if per_call else factory(provider=provider)
        return client.chat.completions, ({"provider": provider} if per_call else {})

    def sync_check():
        create, kwargs = completions()
        if stream:
            check_chunks(list(create.create(messages=messages(prompt), model=MODEL, stream=True, **kwargs)), prompt, names)
        else:
            check_completion(create.create(messages=messages(prompt), model=MODEL, **kwargs), prompt, names)

    def async_check():
        async def run():
            create, kwargs = completions()
            if stream:
                result = create.create(messages=messages(prompt), model=MODEL, stream=True, **kwargs)
                check_chunks([chunk async for chunk in result], prompt, names)
            else:
                check_completion(await create.create(messages=messages(prompt), model=MODEL, **kwargs), prompt, names)
        asyncio.run(run())

    return async_check if factory.__name__ == "AsyncClient" else sync_check


def retry(g4f, kind, members, version, by):
    """*kind* (RetryProvider, ...) holding *members*, through every driver of the version."""
    def get():
        return kind(list(members))

    label = f" with {kind.__name__}([FakeGpt])" + (" named in the list" if by == "name-in-list" else "")
    # 8.x's RotatedProvider does not set working = True, so ChatCompletion refuses it
    # (ProviderNotWorkingError, whatever it holds) unless told ignore_working=True.
    options = {"ignore_working": True} if kind.__name__ == "RotatedProvider" else {}
    checks = []
    for entry, check in chat_completion(g4f, get, by, own=False, label=label, **options):
        if version < (0, 5) and entry.startswith("ChatCompletion.create_async(stream=True)"):
            def refused():
                raises(g4f.StreamNotSupportedError, lambda: g4f.ChatCompletion.create_async(
                    model=MODEL, messages=messages("x"), provider=get(), stream=True, **options))
            check = NotApplicable("0.2.0.9's create_async(stream=True) takes provider classes only", refused)
        checks.append((entry, check))
    if version >= (0, 5):
        entries = [entry for entry in CLIENT_ENTRIES if "(provider=FakeGpt).chat" in entry]
        checks.extend(clients(get, version, by, label=label, entries=entries))
    return checks
