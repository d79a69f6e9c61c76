"""Curation history: every change to an image (upload, edit, delete, restore, purge) with its time,
who made it (when a name is set), and the fields before and after; and how to revert one.

Changes are written in the same transaction as the change itself, so the history is never behind
the DB. One call (a bulk edit of 30 images, an upload of a zip) is one ``batch``, reverted together
or change by change. A revert is itself a change (``undoes`` names the one it reverted), so it can be
reverted in turn. A purge cannot be reverted: the files are gone.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Mapping, Sequence

from rdm.errors import StoreError

TABLE = """CREATE TABLE IF NOT EXISTS changes (  -- the curation history (rdm/db/history.py)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch TEXT NOT NULL,
    at TEXT NOT NULL,
    who TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    image_id INTEGER NOT NULL,  -- no foreign key: a purged image keeps its history
    before TEXT NOT NULL DEFAULT '{}',
    after TEXT NOT NULL DEFAULT '{}',
    undoes INTEGER,
    undone_by INTEGER
);
CREATE INDEX IF NOT EXISTS changes_by_image ON changes(image_id);"""
EDITABLE = ("category", "tags", "caption")


@dataclass(frozen=True)
class Change:
    id: int
    batch: str
    at: str
    who: str
    action: str  # upload | edit | delete | restore | purge
    image_id: int
    before: dict
    after: dict
    undoes: int | None = None  # this change reverted that one
    undone_by: int | None = None  # that change reverted this one

    @property
    def reversible(self) -> bool:
        return self.action != "purge" and self.undone_by is None

    def summary(self) -> str:
        """What changed, in a line: ``caption: 'a dog' → 'a puppy'``."""
        if self.action == "edit":
            what = "; ".join(f"{f}: {self.before.get(f)!r} → {self.after.get(f)!r}" for f in self.after)
        else:
            what = {"upload": "added to the DB", "delete": "deleted (restorable)", "restore": "restored",
                    "purge": "removed for good"}.get(self.action, self.action)
        return what + (f" (reverts change {self.undoes})" if self.undoes else "")

    def to_dict(self) -> dict:
        return {"id": self.id, "batch": self.batch, "at": self.at, "who": self.who, "action": self.action,
                "image_id": self.image_id, "before": self.before, "after": self.after, "undoes": self.undoes,
                "undone_by": self.undone_by, "summary": self.summary()}


@dataclass(frozen=True)
class Reverted:
    """What a revert did, for the store to bring the index along."""

    changes: tuple[int, ...]  # the changes reverted
    hidden: tuple[int, ...]  # images now deleted
    shown: tuple[int, ...]  # images now live again


def new_batch() -> str:
    return secrets.token_hex(6)


def record(con: sqlite3.Connection, batch: str, at: str, who: str, action: str, image_id: int,
           before: Mapping | None = None, after: Mapping | None = None, undoes: int | None = None) -> int:
    cur = con.execute("INSERT INTO changes(batch, at, who, action, image_id, before, after, undoes) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (batch, at, who, action, int(image_id), json.dumps(dict(before or {})),
                       json.dumps(dict(after or {})), undoes))
    return int(cur.lastrowid)


def changes(con: sqlite3.Connection, *, image_id: int | None = None, batch: str | None = None,
            limit: int = 500) -> list[Change]:
    """Newest first; of one image, or of one batch."""
    where, args = [], []
    if image_id is not None:
        where.append("image_id = ?")
        args.append(int(image_id))
    if batch is not None:
        where.append("batch = ?")
        args.append(batch)
    rows = con.execute(f"SELECT * FROM changes {'WHERE ' + ' AND '.join(where) if where else ''} "
                       "ORDER BY id DESC LIMIT ?", [*args, int(limit)]).fetchall()
    return [_change(r) for r in rows]


def change(con: sqlite3.Connection, change_id: int) -> Change:
    row = con.execute("SELECT * FROM changes WHERE id = ?", (int(change_id),)).fetchone()
    if row is None:
        raise StoreError(f"no change {change_id} in the history: `rdm history` lists them")
    return _change(row)


def revert(con: sqlite3.Connection, targets: Sequence[Change], *, batch: str, at: str, who: str) -> Reverted:
    """Apply the inverse of each target (newest first) inside the caller's transaction."""
    hidden, shown = [], []
    for target in sorted(targets, key=lambda c: -c.id):
        if target.action == "purge":
            raise StoreError(f"change {target.id} purged image {target.image_id}: a purge cannot be undone, "
                             "its files are gone")
        if target.undone_by is not None:
            raise StoreError(f"change {target.id} was already reverted by change {target.undone_by}")
        row = con.execute("SELECT * FROM images WHERE id = ?", (target.image_id,)).fetchone()
        if row is None:
            raise StoreError(f"image {target.image_id} of change {target.id} was purged: nothing to revert")
        if target.action == "edit":
            if not set(target.after) <= set(EDITABLE):  # field names go into SQL: only the known ones
                raise StoreError(f"change {target.id} names fields this version cannot edit: {sorted(target.after)}")
            current = {f: json.loads(row[f]) if f == "tags" else row[f] for f in target.after}
            moved = [f for f in target.after if current[f] != target.after[f]]
            if moved:
                raise StoreError(f"image {target.image_id}'s {', '.join(moved)} changed again after change "
                                 f"{target.id}: revert the later change first (`rdm history {target.image_id}`)")
            for field in target.after:
                value = target.before[field]
                con.execute(f"UPDATE images SET {field} = ? WHERE id = ?",
                            (json.dumps(value) if field == "tags" else value, target.image_id))
            inverse = record(con, batch, at, who, "edit", target.image_id, target.after, target.before, target.id)
        else:
            deleted = row["deleted_at"] is not None
            hide = target.action in ("upload", "restore")  # their inverse hides the image again
            if hide == deleted:
                raise StoreError(f"image {target.image_id} is already {'deleted' if deleted else 'live'}: change "
                                 f"{target.id} has nothing left to revert")
            con.execute("UPDATE images SET deleted_at = ? WHERE id = ?", (at if hide else None, target.image_id))
            (hidden if hide else shown).append(target.image_id)
            inverse = record(con, batch, at, who, "delete" if hide else "restore", target.image_id,
                             {"deleted": deleted}, {"deleted": hide}, target.id)
        con.execute("UPDATE changes SET undone_by = ? WHERE id = ?", (inverse, target.id))
    return Reverted(tuple(t.id for t in targets), tuple(hidden), tuple(shown))


def _change(row: sqlite3.Row) -> Change:
    return Change(id=row["id"], batch=row["batch"], at=row["at"], who=row["who"], action=row["action"],
                  image_id=row["image_id"], before=json.loads(row["before"]), after=json.loads(row["after"]),
                  undoes=row["undoes"], undone_by=row["undone_by"])
