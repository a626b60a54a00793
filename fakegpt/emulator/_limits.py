"""The bounds of a server left running (:class:`Limits`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["GATEWAY_LIMITS", "Limits", "MAX_BODY"]

#: The largest request body, in bytes.
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Limits:
    """How much an emulator (or a gateway) keeps and accepts; ``None``: no limit.

    The emulator as a test double keeps everything (:attr:`Emulator.requests
    <fakegpt.emulator.Emulator.requests>`, every conversation, every
    session); a server left running keeps its memory flat with
    :data:`GATEWAY_LIMITS`, the default when it has an upstream.

    :param conversations: conversations kept (the least recently used are forgotten first).
    :param conversation_age: seconds a conversation is kept after its last use.
    :param conversation_bytes: characters of message text kept in all conversations together
        (the least recently used conversations are forgotten first).
    :param sessions: logins and access tokens kept (the oldest are forgotten first).
    :param log_bytes: bytes of request bodies and headers kept in the request log (the oldest go first).
    :param log_body: bytes of each body kept in the request log (the rest is cut off).
    :param header_bytes: the largest request header section (431 past it).
    :param body_bytes: the largest request body (413 past it).
    :param reply_chars: characters of one streamed reply (a responder's deltas,
        e.g. a model server's): past it, the reply ends with
        ``finish_details.type = "max_tokens"``, so the client's ``continue``
        asks for the rest (each continuation has as many again), and the
        responder's deltas are closed (the model server's request hung up).
    :param head_seconds: seconds a connection may take to send a request's line
        and headers, in all, counted from the end of the previous answer (an
        idle keep-alive connection waits for its next request as long): past
        it, the connection is closed, freeing its thread. ``None`` (the
        emulator as a test double): no bound, a connection may stay idle.
    :param body_seconds: seconds the request body may take to arrive, in all
        (not per read; 408 past it). Once the reply streams, no timeout applies:
        a client hanging up is noticed at once.
    """

    conversations: Optional[int] = None
    conversation_age: Optional[float] = None
    conversation_bytes: Optional[int] = None
    sessions: Optional[int] = None
    log_bytes: Optional[int] = None
    log_body: Optional[int] = None
    header_bytes: Optional[int] = None
    body_bytes: int = MAX_BODY
    reply_chars: Optional[int] = None
    head_seconds: Optional[float] = None
    body_seconds: float = 10.0


#: A server left running: 1,000 conversations holding 64 Mi characters of text
#: together, each unused for at most a day; 10,000 sessions; a 1 MiB request log
#: with bodies cut at 2 KiB; 64 KiB of headers and 1 MiB bodies; replies of 64 Ki characters
#: (then ``max_tokens``); 30 s for a request's line and headers (and for an idle
#: connection's next request), 30 s for its body.
GATEWAY_LIMITS = Limits(conversations=1000, conversation_age=86400.0, conversation_bytes=64 << 20, sessions=10000,
                        log_bytes=1 << 20, log_body=2048, header_bytes=65536, body_bytes=MAX_BODY,
                        reply_chars=65536, head_seconds=30.0, body_seconds=30.0)
