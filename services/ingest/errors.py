"""Errors the ingest service reports back to whoever submitted a document."""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """A document or its access file cannot be ingested; the message is meant for the uploader."""


class UnsupportedFormat(IngestError):
    def __init__(self, filename: str, supported: tuple[str, ...] = ()) -> None:
        self.filename = filename
        suffix = Path(filename).suffix.lower()
        kind = f"file type {suffix!r}" if suffix else "a file without an extension"
        hint = f"; supported: {', '.join(supported)}" if supported else ""
        super().__init__(f"cannot ingest {filename!r}: {kind} is not supported{hint}")


class CorruptDocument(IngestError):
    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"cannot ingest {filename!r}: {reason}")


class InvalidAccessFile(IngestError):
    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"invalid access file {path}: {reason}")
