import pytest

from services.generation.conversations import ConversationStore, Turn


def turn(n: int) -> Turn:
    return Turn(f"question {n}", f"answer {n}")


def test_history_is_oldest_first_and_keeps_the_last_turns() -> None:
    store = ConversationStore(max_conversations=4, max_turns=2)
    for n in range(3):
        store.append("alice", "c1", turn(n))

    assert store.history("alice", "c1") == [turn(1), turn(2)]


def test_another_user_with_the_same_conversation_id_sees_nothing() -> None:
    store = ConversationStore(max_conversations=4, max_turns=2)
    store.append("alice", "c1", turn(1))

    assert store.history("bob", "c1") == []
    store.append("bob", "c1", turn(2))
    assert store.history("alice", "c1") == [turn(1)]
    assert store.history("bob", "c1") == [turn(2)]


def test_the_least_recently_used_conversation_is_evicted() -> None:
    store = ConversationStore(max_conversations=2, max_turns=2)
    store.append("alice", "c1", turn(1))
    store.append("alice", "c2", turn(2))
    store.history("alice", "c1")  # reading counts as use
    store.append("alice", "c3", turn(3))

    assert store.history("alice", "c2") == []
    assert store.history("alice", "c1") == [turn(1)]
    assert store.history("alice", "c3") == [turn(3)]


def test_unknown_conversation_has_no_history() -> None:
    assert ConversationStore(max_conversations=1, max_turns=1).history("alice", "nope") == []


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ConversationStore(max_conversations=0, max_turns=1)
