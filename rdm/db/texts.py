"""The curated-text index: each image's caption, tags, category and file-name words in SQLite FTS5.

Triggers on ``images`` keep it in step, so a caption, tag or category edit (or an undo) is searchable
in the same transaction that saves it. FTS5 finds the matching rows (Porter stemming: "dogs" finds
"Dog"); the score is ours: BM25 is unbounded and depends on the query's length, so it cannot sit
beside a cosine under one threshold. A text match here is the share of the query's content words the
image's text holds, each word weighted by its rarity in the DB (BM25's IDF), in [0, 1]. Every content
word counts, matched or not: a word no image holds weighs most (nothing in the DB is known to show it),
so "red cushion" against a caption with "red" alone is a partial match, never a full one.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass
from typing import Collection, Sequence

_WORDS = "replace(replace(replace(replace({0}.filename, '-', ' '), '_', ' '), '.', ' '), '/', ' ')"
_TAGS = "(SELECT group_concat(value, ' ') FROM json_each({0}.tags))"
_ROW = f"{{0}}.caption, {_TAGS}, {{0}}.category, {_WORDS}"

TABLE = "texts"
SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(
    caption, tags, category, words, tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS texts_insert AFTER INSERT ON images BEGIN
    INSERT INTO {TABLE}(rowid, caption, tags, category, words) VALUES (new.id, {_ROW.format('new')});
END;
CREATE TRIGGER IF NOT EXISTS texts_update AFTER UPDATE OF caption, tags, category, filename ON images BEGIN
    DELETE FROM {TABLE} WHERE rowid = old.id;
    INSERT INTO {TABLE}(rowid, caption, tags, category, words) VALUES (new.id, {_ROW.format('new')});
END;
CREATE TRIGGER IF NOT EXISTS texts_delete AFTER DELETE ON images BEGIN
    DELETE FROM {TABLE} WHERE rowid = old.id;
END;
"""
BACKFILL = (f"INSERT INTO {TABLE}(rowid, caption, tags, category, words) "
            f"SELECT images.id, {_ROW.format('images')} FROM images")

# Grammar words carry no content, yet captions hold some ("Chelsea the cat", "Great Pyramid of
# Giza"), where their IDF would make them count. FTS5 has no stop-word list of its own.
STOP_WORDS = frozenset("""
    a about above across after against along among an and around as at before behind below beneath
    beside besides between beyond but by down during for from in inside into is it its near next nor
    of off on onto or our out outside over past per the their them these this those through to toward
    towards under up upon via we while with within without you your
""".split())
MAX_MATCHES = 500  # text candidates per query: enough for any page of results, bounded at scale
FULL_MATCH = 1.0 - 1e-9  # a text match this high holds every content word of the query (each IDF is > 0)


@dataclass(frozen=True)
class TextMatch:
    score: float  # IDF-weighted share of the query's content words this image's text holds, (0, 1]
    words: tuple[str, ...]  # the query words it holds
    of: int  # how many content words the query has


def ensure(con: sqlite3.Connection) -> None:
    """Create the index (and fill it) in a DB that predates it."""
    exists = con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone()
    con.executescript(SCHEMA)
    if not exists:
        con.execute("BEGIN IMMEDIATE")
        try:
            rebuild(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def out_of_step(con: sqlite3.Connection) -> int:
    """How many images' indexed text differs from their row (missing, stale or left over)."""
    current = f"SELECT images.id, {_ROW.format('images')} FROM images"
    indexed = f"SELECT rowid, caption, tags, category, words FROM {TABLE}"
    return con.execute(f"SELECT COUNT(DISTINCT id) FROM (SELECT * FROM ({current} EXCEPT {indexed}) "
                       f"UNION ALL SELECT * FROM ({indexed} EXCEPT {current}))").fetchone()[0]


def rebuild(con: sqlite3.Connection) -> None:
    """Index every image's text afresh (inside the caller's transaction)."""
    con.execute(f"DELETE FROM {TABLE}")
    con.execute(BACKFILL)


def query_words(text: str) -> tuple[str, ...]:
    """The content words of a query, each once, in order."""
    words = (w for w in re.findall(r"[^\W_]+", text.lower()) if w not in STOP_WORDS)
    return tuple(dict.fromkeys(words))


def match(con: sqlite3.Connection, text: str, *, allowed: Collection[int] | None = None,
          limit: int = MAX_MATCHES) -> dict[int, TextMatch]:
    """Live images whose curated text holds words of ``text``, best first (at most ``limit``)."""
    words = query_words(text)
    if not words:
        return {}
    live = con.execute("SELECT COUNT(*) FROM images WHERE deleted_at IS NULL").fetchone()[0]
    holders: dict[str, set[int]] = {}
    for word in words:
        holders[word] = {r[0] for r in con.execute(
            f"SELECT t.rowid FROM {TABLE} t JOIN images i ON i.id = t.rowid "
            f"WHERE {TABLE} MATCH ? AND i.deleted_at IS NULL", (_phrase(word),))}
    # BM25's IDF, for the words no image holds too: they lower every image's share
    idf = {w: math.log(1 + (live - len(ids) + 0.5) / (len(ids) + 0.5)) for w, ids in holders.items()}
    total = math.fsum(idf.values())
    found: dict[int, list[str]] = {}
    for word in idf:
        for image_id in holders[word]:
            if allowed is None or image_id in allowed:
                found.setdefault(image_id, []).append(word)
    ranked = sorted(found.items(), key=lambda kv: (-math.fsum(idf[w] for w in kv[1]), kv[0]))[:limit]
    return {i: TextMatch(math.fsum(idf[w] for w in ws) / total, tuple(ws), len(words)) for i, ws in ranked}


def match_matrix(con: sqlite3.Connection, texts: Sequence[str], ids: Sequence[int]) -> list[list[float]]:
    """Text match of each image in ``ids`` (rows) for each query in ``texts`` (columns)."""
    wanted = set(ids)
    per_text = [match(con, t, allowed=wanted, limit=len(wanted)) for t in texts]
    return [[m[i].score if i in m else 0.0 for m in per_text] for i in ids]


def _phrase(word: str) -> str:
    """One word as an FTS5 string: quoted, so no word is read as the query syntax (AND, NEAR, *)."""
    return '"' + word.replace('"', '""') + '"'
