"""The emulator's default responder: a short, deterministic answer to a prompt."""
from __future__ import annotations

import hashlib
import re
from typing import Sequence, Tuple

__all__ = ["History", "clip", "default_responder", "question"]

#: The earlier ``(role, text)`` turns of a conversation.
History = Sequence[Tuple[str, str]]

_OPENERS = (
    "That is a good question.",
    "Here is a short answer.",
    "Happy to help with that.",
    "Let me think about that for a moment.",
)
_FILLER = frozenset(
    "the and for are you your can could would should will please tell about what which who how why when where "
    "this that these those with from into some any give show explain say write make does did have has was were "
    "there their them they our its it's me my".split()
)
_CLOSERS = (
    "Let me know if you would like more detail.",
    "I hope that helps!",
    "Feel free to ask a follow-up question.",
)


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def question(prompt: str) -> str:
    """The last user line of a flattened prompt, or the prompt itself."""
    users = [line[5:].strip() for line in prompt.splitlines() if line.startswith("User:")]
    return users[-1] if users else prompt.strip()


def default_responder(prompt: str, history: History = ()) -> str:
    """A short, deterministic chat answer derived from *prompt*.

    *history* is the earlier ``(role, text)`` turns of the conversation; the
    answer mentions the previous user message, which shows that the server
    kept the history.

    >>> default_responder("What is Python?")[:34]
    'Hello! You said "What is Python?".'
    """
    asked = question(prompt)
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    reply = f'Hello! You said "{clip(asked, 60)}". {_OPENERS[digest[0] % len(_OPENERS)]}'
    words = re.findall(r"[^\W_]+(?:'[^\W_]+)?", asked)
    topic = [w.lower() for w in words if len(w) > 2 and w.lower() not in _FILLER][:3] or words[:3]
    if topic:
        reply += (
            f" When it comes to {' '.join(topic)}, the short answer is that it depends on what"
            " you need, and I am happy to go into detail."
        )
    earlier = [text for role, text in history if role == "user"]
    if earlier:
        reply += f' Earlier you said "{clip(question(earlier[-1]), 60)}", and I have kept that in mind.'
    return f"{reply} {_CLOSERS[digest[1] % len(_CLOSERS)]}"
