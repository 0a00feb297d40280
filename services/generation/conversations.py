"""Recent turns of each conversation, in memory and bounded, readable only by the user who had them."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


class ConversationStore:
    """The last ``max_turns`` turns of the ``max_conversations`` most recently used conversations.

    Conversations are keyed by the caller's subject as well as the conversation id: ids come from clients,
    so another user who sends the same id must find nothing, not someone else's questions and answers.
    They are keyed by ``scope`` too (who else the answers are for, which sources they may draw on): a turn
    narrowed differently starts afresh, so no earlier answer reaches people or sources it excludes.
    """

    def __init__(self, max_conversations: int, max_turns: int) -> None:
        if max_conversations < 1 or max_turns < 1:
            raise ValueError(f"limits must be positive, got {max_conversations} and {max_turns}")
        self._max_conversations = max_conversations
        self._max_turns = max_turns
        self._conversations: OrderedDict[tuple[str, str, str], deque[Turn]] = OrderedDict()
        # gRPC serves requests on a thread pool.
        self._lock = threading.Lock()

    def history(self, subject: str, conversation_id: str, scope: str = "") -> list[Turn]:
        """Oldest turn first; empty for an unknown conversation or one that belongs to someone else."""
        key = (subject, conversation_id, scope)
        with self._lock:
            turns = self._conversations.get(key)
            if turns is None:
                return []
            self._conversations.move_to_end(key)
            return list(turns)

    def append(self, subject: str, conversation_id: str, turn: Turn, scope: str = "") -> None:
        key = (subject, conversation_id, scope)
        with self._lock:
            turns = self._conversations.get(key)
            if turns is None:
                turns = self._conversations[key] = deque(maxlen=self._max_turns)
            self._conversations.move_to_end(key)
            turns.append(turn)
            while len(self._conversations) > self._max_conversations:
                self._conversations.popitem(last=False)
