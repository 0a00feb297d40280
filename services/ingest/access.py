"""Who may read a document, and how that is read from access sidecar files for files that carry no ACL.

``access.yaml`` in a folder applies to that folder and everything below it; the nearest one wins, they
are not merged. ``<filename>.access.yaml`` next to a file replaces the folder's for that one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from services.ingest.errors import InvalidAccessFile

FOLDER_SIDECAR = "access.yaml"
FILE_SIDECAR_SUFFIX = ".access.yaml"
_KEYS = {"groups", "users", "public", "classification"}


@dataclass(frozen=True)
class Access:
    tenant: str
    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    public: bool = False  # readable by every user of the tenant
    classification: str = "internal"

    def principals(self) -> list[str]:
        """ACL entries stored on every chunk; a caller may read a chunk if they hold any of them."""
        entries = {f"group:{group}" for group in self.groups} | {f"user:{user}" for user in self.users}
        if self.public:
            entries.add("everyone")
        return sorted(entries)

    def is_empty(self) -> bool:
        """Nobody may read it; such documents are refused rather than stored unreachable or open."""
        return not self.groups and not self.users and not self.public


def is_sidecar(path: Path) -> bool:
    """Sidecars describe documents and are never ingested themselves."""
    return path.name == FOLDER_SIDECAR or path.name.endswith(FILE_SIDECAR_SUFFIX)


def _names(path: Path, data: dict[str, object], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise InvalidAccessFile(path, f"{key!r} must be a list of non-empty names, got {value!r}")
    return tuple(item.strip() for item in value)


def load_sidecar(path: Path, tenant: str) -> Access | None:
    """Reads one sidecar; None when it does not exist. An empty file yields an empty (refused) Access."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise InvalidAccessFile(path, "not UTF-8 text") from exc
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InvalidAccessFile(path, f"not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidAccessFile(path, f"expected a mapping of {sorted(_KEYS)}, got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in _KEYS)
    if unknown:
        # A misspelt key (say "group") would otherwise silently leave the document unreadable or open.
        raise InvalidAccessFile(path, f"unknown keys {unknown}; allowed: {sorted(_KEYS)}")
    public = data.get("public", False)
    if not isinstance(public, bool):
        raise InvalidAccessFile(path, f"'public' must be true or false, got {public!r}")
    classification = data.get("classification", "internal")
    if not isinstance(classification, str) or not classification.strip():
        raise InvalidAccessFile(path, f"'classification' must be a non-empty string, got {classification!r}")
    return Access(
        tenant=tenant,
        groups=_names(path, data, "groups"),
        users=_names(path, data, "users"),
        public=public,
        classification=classification.strip(),
    )


def access_for(file: Path, root: Path, tenant: str, default: Access | None) -> Access | None:
    """The file's own sidecar, else the nearest folder sidecar up to and including ``root``, else ``default``.

    Raises ValueError when ``file`` is not under ``root``.
    """
    own = load_sidecar(file.with_name(file.name + FILE_SIDECAR_SUFFIX), tenant)
    if own is not None:
        return own
    relative = file.parent.relative_to(root)
    for folder in (root / relative, *(root / parent for parent in relative.parents)):
        found = load_sidecar(folder / FOLDER_SIDECAR, tenant)
        if found is not None:
            return found
    return default
