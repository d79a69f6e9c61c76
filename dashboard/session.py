"""What a browser session keeps across reloads: the working prompt, its edited sub-query table, the
user's name and the images ticked in Browse, in a small JSON file per session id (``<jobs>/sessions/<id>.json``). The id travels in the
URL (``?session=…``), so a reload, which starts a new Streamlit session, finds the same file; another
browser tab without it starts its own."""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from rdm.common.files import atomic_write
from rdm.decompose import Decomposition, DecompositionError

PARAM = "session"
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")  # a file name, never a path
log = logging.getLogger("rdm.dashboard")


@dataclass(frozen=True)
class Kept:
    prompt: str = ""
    decomposition: Decomposition | None = None  # the inspector's edited sub-queries of ``prompt``
    user: str = ""
    browse_selection: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "user": self.user, "browse_selection": list(self.browse_selection),
                "decomposition": self.decomposition.to_dict() if self.decomposition else None}

    @classmethod
    def from_dict(cls, data: dict) -> "Kept":
        decomposition = data.get("decomposition")
        return cls(str(data.get("prompt") or ""), Decomposition.from_dict(decomposition) if decomposition else None,
                   str(data.get("user") or ""), tuple(int(i) for i in data.get("browse_selection") or ()))


def new_id() -> str:
    return secrets.token_urlsafe(12)


def valid_id(value: str | None) -> bool:
    return bool(value and SESSION_ID.fullmatch(value))


def load(folder: Path, session_id: str) -> Kept:
    """What the session kept; nothing for a new id (a damaged file is logged and starts afresh)."""
    path = folder / f"{session_id}.json"
    if not path.is_file():
        return Kept()
    try:
        return Kept.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError, DecompositionError) as exc:
        log.warning("session file %s is unreadable (%s): starting afresh", path, exc)
        return Kept()


def save(folder: Path, session_id: str, kept: Kept) -> None:
    atomic_write(folder / f"{session_id}.json", json.dumps(kept.to_dict(), ensure_ascii=False).encode("utf-8"))
