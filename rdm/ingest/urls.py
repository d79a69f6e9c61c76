"""Download a URL list into the DB: the way the seed built its 1,300-image DB from Unsplash.

A table (CSV, TSV or parquet) with a ``url`` column (Unsplash Lite's ``photo_image_url``) and optionally
``caption`` (``photo_description`` / ``ai_description``), ``tags`` (or Unsplash's ``keywords.tsv000`` beside
it), ``category``, ``author`` (``photographer_username``) and ``source`` (``photo_url``). Each URL is
fetched with a timeout per attempt and a deadline for all of them, retried on connection errors and 5xx
answers, streamed to a file (cut off past the size limit), then checked like an upload; every URL gets a
line in the report, a row that cannot be read too. Redirects are followed by hand, each under the rules of
the first URL (http(s) only, the same deadline). A URL already in the DB (its ``source``) is not fetched
again, so an interrupted download resumes where it stopped.

Why not img2dataset: it re-encodes and resizes into its own shard layout and brings Spark-sized
machinery; here the original bytes go through the DB's own checks, one report line per URL, and the
DB itself is the resume point. For millions of URLs, run img2dataset and clip-retrieval on a cluster
and bring the result with ``rdm import-embeddings``.
"""

from __future__ import annotations

import numbers
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlsplit

import httpx

from rdm.db import ImageStore
from rdm.db.records import IngestReport, ProgressFn
from rdm.errors import BadRequestError
from rdm.common.files import slug
from rdm.common.redact import strip_credentials
from rdm.common.sources import MAX_FILE_BYTES, Candidate, IngestItem, read_file
from rdm.common.tables import read_table

UNSPLASH_LICENCE = "Unsplash License (https://unsplash.com/license)"
COLUMNS = {  # our field <- the first of these columns that a row fills
    "url": ("url", "photo_image_url", "image_url"),
    "caption": ("caption", "photo_description", "ai_description", "description"),
    "tags": ("tags", "keywords"),
    "category": ("category",),
    "author": ("author", "photographer_username", "photographer"),
    "source": ("source", "photo_url", "page_url"),
    "licence": ("licence", "license"),
    "id": ("id", "photo_id", "key"),
}
CHUNK = 64  # URLs fetched, then stored, together: memory stays bounded for any list length
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class UrlRow:
    url: str
    name: str  # the DB's file name for it
    fields: dict  # caption, tags, category, author, source, licence
    problem: str = ""  # why the row cannot be fetched: its line in the report

    @property
    def shown(self) -> str:  # the URL as messages show it
        return strip_credentials(self.url)


@dataclass(frozen=True)
class FetchPolicy:
    timeout_s: float = 20.0  # to connect, and between two reads of one attempt
    retries: int = 2
    max_bytes: int = MAX_FILE_BYTES
    workers: int = 8
    backoff_s: float = 0.5
    deadline_s: float = 120.0  # one URL, every attempt and redirect together: a server trickling bytes is cut off


def read_url_table(path: str | Path, keywords: str | Path | None = None) -> list[UrlRow]:
    """Rows of a URL table; Unsplash Lite's ``keywords.tsv000`` (photo_id, keyword) becomes tags."""
    path = Path(path)
    frame = read_table(path)
    chosen = {field: [c for c in names if c in frame.columns] for field, names in COLUMNS.items()}
    if not chosen["url"]:
        raise BadRequestError(f"{path.name} has no url column (one of {', '.join(COLUMNS['url'])}); it has "
                              f"{', '.join(map(str, frame.columns))}")
    extra_tags: dict[str, list[str]] = {}
    if keywords is not None:
        kw = read_table(Path(keywords))
        if not {"photo_id", "keyword"} <= set(kw.columns):
            raise BadRequestError(f"{Path(keywords).name} needs photo_id and keyword columns "
                                  "(Unsplash's keywords file)")
        for photo_id, keyword in zip(kw["photo_id"], kw["keyword"]):
            extra_tags.setdefault(str(photo_id), []).append(str(keyword))
    unsplash = "photo_image_url" in frame.columns
    rows, seen = [], set()
    for n, record in enumerate(frame.to_dict("records")):
        try:
            rows.append(_row(n, record, chosen, extra_tags.get, unsplash, seen))
        except (ValueError, TypeError) as exc:  # this row only (a bad URL, a list where text belongs)
            rows.append(UrlRow("", f"row-{n + 1}", {"source": ""}, f"row {n + 1} of {path.name} cannot be used: {exc}"))
    return rows


def _row(n: int, record: dict, chosen: dict, tags_of, unsplash: bool, seen: set) -> UrlRow:
    # per field, the first of its columns this row fills (Unsplash: ai_description when there is no description)
    value = {f: text for f, columns in chosen.items()
             if (text := next((t for c in columns if (t := _text(record[c]))), None))}
    url = value.get("url", "")
    urlsplit(url)  # a malformed URL ("http://[::1") is this row's reason
    key = value.get("id") or Path(urlsplit(url).path).stem or str(n)  # the row's id, else the URL's file
    tags = [t.strip() for t in value.get("tags", "").split(",") if t.strip()] + tags_of(key, [])
    fields = {f: value[f] for f in ("caption", "category", "author", "licence") if f in value}
    fields["source"] = strip_credentials(value.get("source") or url)  # stored and shown: no password
    if unsplash:
        fields.setdefault("licence", UNSPLASH_LICENCE)
    if tags:
        fields["tags"] = list(dict.fromkeys(tags))
    suffix = Path(urlsplit(url).path).suffix.lower()
    name = f"{slug(key, 40)}{suffix if suffix in ('.jpg', '.jpeg', '.png', '.webp') else '.jpg'}"
    if name in seen:
        name = f"{slug(key, 40)}-{n}{Path(name).suffix}"
    seen.add(name)
    return UrlRow(url, name, fields)


def _text(cell: object) -> str:
    """A cell's text ('' when empty); a list or a mapping (a parquet column of them) is not text."""
    import pandas as pd

    if not isinstance(cell, (str, numbers.Number)) and cell is not None and not pd.api.types.is_scalar(cell):
        raise TypeError(f"a {type(cell).__name__} where text belongs")
    return "" if pd.isna(cell) else str(cell).strip()


class _Failed(Exception):
    """One attempt at a URL failed; ``retry``: whether another attempt may do better."""

    def __init__(self, reason: str, retry: bool = False):
        super().__init__(reason)
        self.retry = retry


def fetch(client: httpx.Client, row: UrlRow, policy: FetchPolicy, target: Path) -> Candidate | IngestItem:
    """The URL's bytes, streamed into ``target``, as a candidate; or a skipped item saying why."""
    if row.problem:
        return IngestItem(row.name, "skipped", row.problem)
    deadline, last = time.monotonic() + policy.deadline_s, ""
    for attempt in range(policy.retries + 1):
        if attempt:
            time.sleep(policy.backoff_s * attempt)
        try:
            _download(client, row, policy, target, deadline)
            return Candidate(row.name, lambda: read_file(target))
        except _Failed as exc:
            if not exc.retry:
                return IngestItem(row.name, "skipped", str(exc))
            last = str(exc)
        except httpx.TimeoutException:
            last = f"timed out after {policy.timeout_s:g} s: {row.shown}"
        except httpx.HTTPError as exc:
            last = f"cannot fetch {row.shown}: {type(exc).__name__}"
        except (httpx.InvalidURL, ValueError) as exc:  # httpx rejects what urlsplit let through
            return IngestItem(row.name, "skipped", f"{row.shown!r} is not a usable URL ({exc})")
        if time.monotonic() >= deadline:
            break
    return IngestItem(row.name, "skipped", f"{last} ({attempt + 1} attempts)")


def _download(client: httpx.Client, row: UrlRow, policy: FetchPolicy, target: Path, deadline: float) -> None:
    """One attempt: follow redirects by hand (each an http(s) URL), stream the body into ``target``."""
    url = row.url
    for _ in range(MAX_REDIRECTS + 1):
        shown = strip_credentials(url)
        if urlsplit(url).scheme not in ("http", "https"):
            raise _Failed(f"{shown!r} is not an http(s) URL")
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Failed(f"took longer than {policy.deadline_s:g} s in all: {row.shown}")
        with client.stream("GET", url, timeout=min(policy.timeout_s, left)) as reply:
            if reply.is_redirect:
                url = str(reply.url.join(reply.headers["location"]))
                continue
            if reply.status_code != 200:
                raise _Failed(f"HTTP {reply.status_code} from {shown}", retry=reply.status_code >= 500)
            declared = reply.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > policy.max_bytes:
                raise _Failed(_too_big(int(declared), policy))
            size = 0
            with open(target, "wb") as out:
                for chunk in reply.iter_bytes():
                    size += len(chunk)
                    if size > policy.max_bytes:
                        raise _Failed(_too_big(size, policy, "more than"))
                    if time.monotonic() > deadline:
                        raise _Failed(f"took longer than {policy.deadline_s:g} s in all: {row.shown}")
                    out.write(chunk)
            return
    raise _Failed(f"more than {MAX_REDIRECTS} redirects from {row.shown}")


def _too_big(size: int, policy: FetchPolicy, how: str = "") -> str:
    return f"{how + ' ' if how else ''}{size / 2**20:.1f} MB, over the {policy.max_bytes / 2**20:.1f} MB limit"


def _chunks(rows: Sequence[UrlRow]) -> Iterator[Sequence[UrlRow]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start:start + CHUNK]


def ingest_urls(store: ImageStore, rows: Sequence[UrlRow], *, policy: FetchPolicy = FetchPolicy(),
                category: str | None = None, tags: str | Sequence[str] | None = None, who: str = "",
                progress: ProgressFn | None = None) -> IngestReport:
    """Fetch every row's URL (``policy.workers`` at a time) and store what passes the checks; bodies wait in
    temporary files (TMPDIR), not in memory, until their chunk is stored."""
    known = store.catalog.sources()
    items: list[IngestItem] = []
    done = 0
    with httpx.Client(follow_redirects=False, headers={"User-Agent": "rdm-studio"}) as client, \
            ThreadPoolExecutor(policy.workers, thread_name_prefix="rdm-download") as pool, \
            tempfile.TemporaryDirectory(prefix="rdm-download-") as spool:
        for chunk in _chunks(list(rows)):
            todo = [r for r in chunk if r.fields["source"] not in known]
            items += [IngestItem(r.name, "duplicate", f"{r.fields['source']} is in the DB already")
                      for r in chunk if r.fields["source"] in known]
            targets = [Path(spool) / str(n) for n in range(len(todo))]
            fetched = list(pool.map(lambda r, t: fetch(client, r, policy, t), todo, targets))
            report = store.ingest_candidates(fetched, category=category, tags=tags, who=who,
                                             metadata={r.name: r.fields for r in todo})
            for target in targets:
                target.unlink(missing_ok=True)
            items += report.items
            done += len(chunk)
            if progress:
                progress(done, len(rows))
    return IngestReport(tuple(items))
