"""The bots' own small state in SQLite: per-channel configuration, which generation conversation each chat
thread continues, and the event ids already handled (chat platforms redeliver events)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Visibility = Literal["channel", "ephemeral"]
VISIBILITIES: tuple[Visibility, ...] = ("channel", "ephemeral")
# Event ids are kept this long; platforms redeliver within minutes.
SEEN_EVENTS_KEPT_S = 3600.0


@dataclass(frozen=True)
class ChannelConfig:
    enabled: bool = True
    # "channel": answers are posted for everyone in the channel (and use only what all of them may read);
    # "ephemeral": only the asker sees the answer, computed with the asker's rights alone.
    visibility: Visibility = "channel"
    # Documents whose uri starts with one of these (whole path segments); empty means all. Sent with each
    # question as AnswerRequest.uri_prefixes, and retrieval applies them inside its query.
    source_prefixes: tuple[str, ...] = field(default_factory=tuple)


def changed(config: ChannelConfig, setting: str, values: list[str]) -> ChannelConfig | None:
    """``config`` with one setting changed as a chat command says (``enabled on|off``, ``visibility
    channel|ephemeral``, ``sources all|PREFIX...``); None when the command is not one of those."""
    if setting == "enabled" and values in (["on"], ["off"]):
        return ChannelConfig(values == ["on"], config.visibility, config.source_prefixes)
    if setting == "visibility" and len(values) == 1 and values[0] in VISIBILITIES:
        visibility: Visibility = "ephemeral" if values[0] == "ephemeral" else "channel"
        return ChannelConfig(config.enabled, visibility, config.source_prefixes)
    if setting == "sources" and values:
        prefixes = () if values == ["all"] else tuple(values)
        return ChannelConfig(config.enabled, config.visibility, prefixes)
    return None


def describe(config: ChannelConfig) -> str:
    state = "on" if config.enabled else "off"
    visibility = (
        "answers are posted in the channel and use only documents every member may read"
        if config.visibility == "channel"
        else "answers are shown only to the asker and use the asker's own access"
    )
    sources = (
        "all documents"
        if not config.source_prefixes
        else "documents under " + ", ".join(f"`{p}`" for p in config.source_prefixes)
    )
    return f"The copilot is {state} in this channel; {visibility}; sources: {sources}."


class BotStore:
    def __init__(
        self, path: Path, conversation_idle_s: float = 3600.0, clock: Callable[[], float] = time.time
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS channel_config (
                platform TEXT NOT NULL, channel TEXT NOT NULL, enabled INTEGER NOT NULL,
                visibility TEXT NOT NULL, source_prefixes TEXT NOT NULL, updated_by TEXT NOT NULL,
                updated_at REAL NOT NULL, PRIMARY KEY (platform, channel));
            CREATE TABLE IF NOT EXISTS conversations (
                thread_key TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, used_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS seen_events (event_id TEXT PRIMARY KEY, seen_at REAL NOT NULL);
            """
        )
        self._clock = clock
        self._conversation_idle_s = conversation_idle_s
        self._lock = threading.Lock()

    def channel_config(self, platform: str, channel: str) -> ChannelConfig:
        with self._lock:
            row = self._db.execute(
                "SELECT enabled, visibility, source_prefixes FROM channel_config"
                " WHERE platform=? AND channel=?",
                (platform, channel),
            ).fetchone()
        if row is None:
            return ChannelConfig()
        visibility: Visibility = "ephemeral" if row[1] == "ephemeral" else "channel"
        return ChannelConfig(bool(row[0]), visibility, tuple(json.loads(row[2])))

    def set_channel_config(self, platform: str, channel: str, config: ChannelConfig, updated_by: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO channel_config VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    platform,
                    channel,
                    int(config.enabled),
                    config.visibility,
                    json.dumps(list(config.source_prefixes)),
                    updated_by,
                    self._clock(),
                ),
            )

    def conversation(self, thread_key: str) -> str:
        """The generation conversation a thread continues; empty when there is none or it went idle."""
        with self._lock:
            row = self._db.execute(
                "SELECT conversation_id, used_at FROM conversations WHERE thread_key=?", (thread_key,)
            ).fetchone()
        if row is None or self._clock() - row[1] > self._conversation_idle_s:
            return ""
        return str(row[0])

    def remember_conversation(self, thread_key: str, conversation_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO conversations VALUES (?, ?, ?)",
                (thread_key, conversation_id, self._clock()),
            )

    def first_time(self, event_id: str) -> bool:
        """True the first time an event id is seen; redeliveries get False."""
        now = self._clock()
        with self._lock:
            self._db.execute("DELETE FROM seen_events WHERE seen_at < ?", (now - SEEN_EVENTS_KEPT_S,))
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO seen_events VALUES (?, ?)", (event_id, now)
            ).rowcount
        return inserted == 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
