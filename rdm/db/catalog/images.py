"""The catalog's image rows: reading them, filtering them, and the curation writes that change them
(insert, edit, soft delete, purge, undo), each in one transaction with its history."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np

from rdm.db import history
from rdm.db.catalog.base import CatalogBase, now
from rdm.db.records import ImageRecord, Stats, parse_tags
from rdm.errors import StoreError

IMAGE_COLUMNS = ("sha256", "filename", "ext", "category", "tags", "caption", "source", "licence", "author",
                 "width", "height", "added_at")


class ImageRows(CatalogBase):
    """Image rows and their curation history."""


    @staticmethod
    def _record(row: sqlite3.Row) -> ImageRecord:
        d = dict(row)
        d["tags"] = tuple(json.loads(d["tags"]))
        return ImageRecord(**d)

    def get(self, image_id: int) -> ImageRecord:
        with self.read() as con:
            row = con.execute("SELECT * FROM images WHERE id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise StoreError(f"no image with id {image_id} in the DB at {self.db_file.parent}")
        return self._record(row)

    def records(self, *, include_deleted: bool = False, only_deleted: bool = False,
                category: str | None = None, tag: str | None = None, text: str | None = None,
                ids: Sequence[int] | None = None) -> list[ImageRecord]:
        sql, args = filter_sql(include_deleted=include_deleted, only_deleted=only_deleted,
                                category=category, tag=tag, text=text, ids=ids)
        with self.read() as con:
            rows = con.execute(f"SELECT * FROM images WHERE {sql} ORDER BY id", args).fetchall()
        return [self._record(r) for r in rows]

    def live_ids(self) -> np.ndarray:
        """Ids of the live images that have a vector: what the index must hold."""
        with self.read() as con:
            return np.fromiter((r[0] for r in con.execute(
                "SELECT v.image_id FROM vectors v JOIN images i ON i.id = v.image_id WHERE i.deleted_at IS NULL "
                "ORDER BY v.image_id")), np.int64)

    def image_ids(self, *, category: str | None = None, tag: str | None = None,
                  text: str | None = None) -> np.ndarray:
        """Ids of the live images that pass the filters, straight from SQL (no record per row: search
        filters a million rows with this), kept per DB revision: a curator repeats a filter."""
        key = (int(self.meta("revision")), category, tag, text)
        found = self._ids_cache.get(key)
        if found is None:
            sql, args = filter_sql(category=category, tag=tag, text=text)
            with self.read() as con:
                found = np.fromiter((r[0] for r in con.execute(f"SELECT id FROM images WHERE {sql}", args)), np.int64)
            if len(self._ids_cache) >= 8:  # threads share the cache: a lost race only drops an entry twice
                self._ids_cache.pop(next(iter(self._ids_cache), None), None)
            self._ids_cache[key] = found
        return found

    def require(self, ids: Sequence[int]) -> None:
        found = {r.id for r in self.records(include_deleted=True, ids=list(ids))}
        missing = [i for i in ids if int(i) not in found]
        if missing:
            raise StoreError(f"no image with id {', '.join(map(str, missing))} in the DB at {self.db_file.parent}")

    def categories(self) -> list[str]:
        with self.read() as con:
            return [r[0] for r in con.execute(
                "SELECT DISTINCT category FROM images WHERE category != '' ORDER BY category")]

    def tags(self) -> list[str]:
        with self.read() as con:
            return [r[0] for r in con.execute(
                "SELECT DISTINCT j.value FROM images, json_each(images.tags) j "
                "WHERE images.deleted_at IS NULL ORDER BY j.value")]

    def stats(self, path: Path) -> Stats:
        with self.read() as con:
            live = con.execute("SELECT COUNT(*) FROM images WHERE deleted_at IS NULL").fetchone()[0]
            deleted = con.execute("SELECT COUNT(*) FROM images WHERE deleted_at IS NOT NULL").fetchone()[0]
            by_cat = dict(con.execute("SELECT category, COUNT(*) FROM images WHERE deleted_at IS NULL "
                                      "GROUP BY category ORDER BY category").fetchall())
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        return Stats(path=str(path), live=live, deleted=deleted, by_category=by_cat, encoder=meta["encoder"],
                     encoder_reason=meta.get("encoder_reason", ""), dim=int(meta["dim"]),
                     index_version=int(meta["index_version"]), revision=int(meta["revision"]))

    def id_for_sha(self, sha: str) -> int | None:
        with self.read() as con:
            row = con.execute("SELECT id FROM images WHERE sha256 = ?", (sha,)).fetchone()
        return None if row is None else int(row[0])

    def sources(self) -> set[str]:
        """Where the images came from (URLs of downloaded ones): a URL list resumes past these."""
        with self.read() as con:
            return {r[0] for r in con.execute("SELECT DISTINCT source FROM images WHERE source != ''")}

    # -- writes

    def insert(self, rows: Sequence[tuple[dict, np.ndarray]], who: str = "") -> tuple[list[int], list[bool], int]:
        """Image rows (column -> value) with their vectors, acknowledged in one transaction; returns their ids,
        whether each is new (a row whose bytes another ingest stored meanwhile keeps that image's id) and the
        index version of the commit."""
        ids, fresh, batch, at = [], [], history.new_batch(), now()
        with self.tx() as con:
            for fields, _ in rows:
                cur = con.execute(f"INSERT INTO images({', '.join(IMAGE_COLUMNS)}) "
                                  f"VALUES ({', '.join('?' * len(IMAGE_COLUMNS))}) ON CONFLICT(sha256) DO NOTHING",
                                  [fields[c] for c in IMAGE_COLUMNS])
                fresh.append(cur.rowcount == 1)
                if not fresh[-1]:
                    ids.append(con.execute("SELECT id FROM images WHERE sha256 = ?", (fields["sha256"],)).fetchone()[0])
                    continue
                ids.append(cur.lastrowid)
                con.execute("INSERT INTO vectors(image_id) VALUES (?)", (cur.lastrowid,))
                if fields.get("phash"):
                    con.execute("INSERT INTO hashes(image_id, phash) VALUES (?, ?)", (cur.lastrowid, fields["phash"]))
                history.record(con, batch, at, who, "upload", cur.lastrowid, after={
                    "filename": fields["filename"], "category": fields["category"], "caption": fields["caption"]})
            new = [(i, v) for i, (_, v), f in zip(ids, rows, fresh) if f]
            if new:  # on disk before the commit that lists them
                self.vector_file(con).write([i for i, _ in new], np.stack([np.asarray(v, np.float32) for _, v in new]))
            version = self.bump(con, vectors_changed=bool(new))
        return ids, fresh, version

    def edit_many(self, ids: Sequence[int], *, category: str | None, tags: str | Sequence[str] | None,
                  caption: str | None, add_tags: str | Sequence[str] | None, who: str = "") -> None:
        batch, at = history.new_batch(), now()
        with self.tx() as con:
            for image_id in ids:
                row = con.execute("SELECT category, tags, caption FROM images WHERE id = ?", (image_id,)).fetchone()
                before = {"category": row["category"], "tags": json.loads(row["tags"]), "caption": row["caption"]}
                after = dict(before)
                if category is not None:
                    after["category"] = category.strip()
                if caption is not None:
                    after["caption"] = caption.strip()
                if tags is not None or add_tags is not None:
                    new = parse_tags(tags) if tags is not None else tuple(before["tags"])
                    after["tags"] = list(parse_tags(list(new) + list(parse_tags(add_tags))))
                changed = [f for f in history.EDITABLE if after[f] != before[f]]
                if not changed:
                    continue
                con.execute(f"UPDATE images SET {', '.join(f'{f} = ?' for f in changed)} WHERE id = ?",
                            [json.dumps(after[f]) if f == "tags" else after[f] for f in changed] + [image_id])
                history.record(con, batch, at, who, "edit", image_id, {f: before[f] for f in changed},
                               {f: after[f] for f in changed})
            self.bump(con, vectors_changed=False)

    def set_deleted(self, ids: Sequence[int], deleted: bool, who: str = "") -> tuple[list[int], int]:
        """Soft-delete (or restore) ``ids``; returns those that changed and the index version after."""
        sql = ("UPDATE images SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL" if deleted else
               "UPDATE images SET deleted_at = NULL WHERE id = ? AND deleted_at IS NOT NULL")
        batch, at = history.new_batch(), now()
        with self.tx() as con:
            changed = [i for i in ids if con.execute(sql, (at, i) if deleted else (i,)).rowcount]
            for image_id in changed:
                history.record(con, batch, at, who, "delete" if deleted else "restore", image_id,
                               {"deleted": not deleted}, {"deleted": deleted})
            version = self.bump(con, vectors_changed=bool(changed))
        return changed, version

    def remove(self, ids: Sequence[int], who: str = "") -> int:
        """Rows and their vectors, gone for good (their history stays); returns the index version after."""
        batch, at = history.new_batch(), now()
        with self.tx() as con:
            for image_id in ids:
                row = con.execute("SELECT filename, category, caption FROM images WHERE id = ?",
                                  (int(image_id),)).fetchone()
                con.execute("DELETE FROM images WHERE id = ?", (int(image_id),))
                if row is not None:
                    history.record(con, batch, at, who, "purge", image_id, before=dict(row))
            vectors = self.vector_file(con)
            version = self.bump(con, vectors_changed=True)
        vectors.clear(ids)  # after the commit: a failed one keeps its rows' vectors
        return version

    def history(self, image_id: int | None = None, limit: int = 500, *,
                batch: str | None = None) -> list[history.Change]:
        with self.read() as con:
            return history.changes(con, image_id=image_id, batch=batch, limit=limit)

    def revert(self, change_id: int, *, whole_batch: bool, who: str = "") -> tuple[history.Reverted, int]:
        """Revert one change, or every change of its batch, in one transaction; and the index version after."""
        with self.tx() as con:
            target = history.change(con, change_id)
            targets = [c for c in history.changes(con, batch=target.batch, limit=100_000)
                       if c.undone_by is None] if whole_batch else [target]
            done = history.revert(con, targets, batch=history.new_batch(), at=now(), who=who)
            version = self.bump(con, vectors_changed=bool(done.hidden or done.shown))
        return done, version


def filter_sql(*, include_deleted: bool = False, only_deleted: bool = False, category: str | None = None,
                tag: str | None = None, text: str | None = None,
                ids: Sequence[int] | None = None) -> tuple[str, list]:
    clauses, args = ["1"], []
    if only_deleted:
        clauses.append("deleted_at IS NOT NULL")
    elif not include_deleted:
        clauses.append("deleted_at IS NULL")
    if category:
        clauses.append("category = ?")
        args.append(category)
    if tag:
        clauses.append("EXISTS (SELECT 1 FROM json_each(images.tags) WHERE value = ?)")
        args.append(tag.strip().lower())
    if text:
        clauses.append("(caption LIKE ? ESCAPE '\\' OR filename LIKE ? ESCAPE '\\' OR tags LIKE ? ESCAPE '\\')")
        literal = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")  # typed % and _ are text
        args += [f"%{literal}%"] * 3
    if ids is not None:
        clauses.append(f"id IN ({','.join('?' * len(ids)) or 'NULL'})")
        args += [int(i) for i in ids]
    return " AND ".join(clauses), args
