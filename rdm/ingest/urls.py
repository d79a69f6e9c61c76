"""Download a URL list into the DB: the way the seed built its 1,300-image DB from Unsplash.

A table (CSV, TSV or parquet) with a ``url`` column (Unsplash Lite's ``photo_image_url``) and optionally
``caption`` (``photo_description`` / ``ai_description``), ``tags`` (or Unsplash's ``keywords.tsv000`` beside
it), ``category``, ``author`` (``photographer_username``) and ``source`` (``photo_url``). Each URL is
fetched with a timeout, retried on connection errors and 5xx answers, cut off past the size limit, and
then checked like an upload; every URL gets a line in the report. A URL already in the DB (its
``source``) is not fetched again, so an interrupted download resumes where it stopped.

Why not img2dataset: it re-encodes and resizes into its own shard layout and brings Spark-sized
machinery; here the original bytes go through the DB's own checks, one report line per URL, and the
DB itself is the resume point. For millions of URLs, run img2dataset and clip-retrieval on a cluster
and bring the result with ``rdm import-embeddings``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

import httpx

from rdm.db import ImageStore
from rdm.db.records import IngestReport, ProgressFn
from rdm.errors import BadRequestError
from rdm.common.files import slug
from rdm.common.redact import strip_credentials
from rdm.common.sources import MAX_FILE_BYTES, Candidate, IngestItem

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


@dataclass(frozen=True)
class UrlRow:
    url: str
    name: str  # the DB's file name for it
    fields: dict  # caption, tags, category, author, source, licence


@dataclass(frozen=True)
class FetchPolicy:
    timeout_s: float = 20.0
    retries: int = 2
    max_bytes: int = MAX_FILE_BYTES
    workers: int = 8
    backoff_s: float = 0.5


def read_url_table(path: str | Path, keywords: str | Path | None = None) -> list[UrlRow]:
    """Rows of a URL table; Unsplash Lite's ``keywords.tsv000`` (photo_id, keyword) becomes tags."""
    import pandas as pd

    path = Path(path)
    frame = _table(path)
    chosen = {field: [c for c in names if c in frame.columns] for field, names in COLUMNS.items()}
    if not chosen["url"]:
        raise BadRequestError(f"{path.name} has no url column (one of {', '.join(COLUMNS['url'])}); it has "
                              f"{', '.join(map(str, frame.columns))}")
    extra_tags: dict[str, list[str]] = {}
    if keywords is not None:
        kw = _table(Path(keywords))
        if not {"photo_id", "keyword"} <= set(kw.columns):
            raise BadRequestError(f"{Path(keywords).name} needs photo_id and keyword columns "
                                  "(Unsplash's keywords file)")
        for photo_id, keyword in zip(kw["photo_id"], kw["keyword"]):
            extra_tags.setdefault(str(photo_id), []).append(str(keyword))
    unsplash = "photo_image_url" in frame.columns
    rows, seen = [], set()
    for n, record in enumerate(frame.to_dict("records")):
        # per field, the first of its columns this row fills (Unsplash: ai_description when there is no description)
        value = {f: next(str(record[c]) for c in columns if not pd.isna(record[c]) and str(record[c]).strip())
                 for f, columns in chosen.items()
                 if any(not pd.isna(record[c]) and str(record[c]).strip() for c in columns)}
        url = str(value.get("url", "")).strip()
        key = str(value.get("id") or Path(urlparse(url).path).stem or n)  # the row's id, else the URL's file
        tags = [t.strip() for t in str(value.get("tags", "")).split(",") if t.strip()] + extra_tags.get(key, [])
        fields = {f: str(value[f]) for f in ("caption", "category", "author", "licence") if f in value}
        fields["source"] = strip_credentials(value.get("source") or url)  # stored and shown: no password
        if unsplash:
            fields.setdefault("licence", UNSPLASH_LICENCE)
        if tags:
            fields["tags"] = list(dict.fromkeys(tags))
        suffix = Path(urlparse(url).path).suffix.lower()
        name = f"{slug(key, 40)}{suffix if suffix in ('.jpg', '.jpeg', '.png', '.webp') else '.jpg'}"
        if name in seen:
            name = f"{slug(key, 40)}-{n}{Path(name).suffix}"
        seen.add(name)
        rows.append(UrlRow(url, name, fields))
    return rows


def _table(path: Path):
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        sep = "\t" if path.suffix in (".tsv", ".tsv000") or path.name.endswith(".tsv000") else None
        return pd.read_csv(path, sep=sep, engine="python" if sep is None else "c", dtype=str, keep_default_na=True)
    except (OSError, ValueError) as exc:
        raise BadRequestError(f"{path} cannot be read as a table ({exc})") from exc


def fetch(client: httpx.Client, row: UrlRow, policy: FetchPolicy) -> Candidate | IngestItem:
    """The URL's bytes as a candidate, or a skipped item saying why."""
    scheme = urlparse(row.url).scheme
    if scheme not in ("http", "https"):
        return IngestItem(row.name, "skipped", f"{row.url!r} is not an http(s) URL")
    last = ""
    for attempt in range(policy.retries + 1):
        if attempt:
            time.sleep(policy.backoff_s * attempt)
        try:
            with client.stream("GET", row.url, timeout=policy.timeout_s) as reply:
                if reply.status_code >= 500:
                    last = f"HTTP {reply.status_code} from {row.url}"
                    continue
                if reply.status_code != 200:
                    return IngestItem(row.name, "skipped", f"HTTP {reply.status_code} from {row.url}")
                declared = int(reply.headers.get("content-length") or 0)
                if declared > policy.max_bytes:
                    return IngestItem(row.name, "skipped", _too_big(declared, policy))
                data = bytearray()
                for chunk in reply.iter_bytes():
                    data += chunk
                    if len(data) > policy.max_bytes:
                        return IngestItem(row.name, "skipped", _too_big(len(data), policy, "more than"))
            payload = bytes(data)
            return Candidate(row.name, lambda: payload)
        except httpx.TimeoutException:
            last = f"timed out after {policy.timeout_s:g} s: {row.url}"
        except httpx.HTTPError as exc:
            last = f"cannot fetch {row.url}: {type(exc).__name__}"
    return IngestItem(row.name, "skipped", f"{last} ({policy.retries + 1} attempts)")


def _too_big(size: int, policy: FetchPolicy, how: str = "") -> str:
    return f"{how + ' ' if how else ''}{size / 2**20:.1f} MB, over the {policy.max_bytes / 2**20:.1f} MB limit"


def _chunks(rows: Sequence[UrlRow]) -> Iterator[Sequence[UrlRow]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start:start + CHUNK]


def ingest_urls(store: ImageStore, rows: Sequence[UrlRow], *, policy: FetchPolicy = FetchPolicy(),
                category: str | None = None, tags: str | Sequence[str] | None = None, who: str = "",
                progress: ProgressFn | None = None) -> IngestReport:
    """Fetch every row's URL (``policy.workers`` at a time) and store what passes the checks."""
    known = store.catalog.sources()
    items: list[IngestItem] = []
    done = 0
    with httpx.Client(follow_redirects=True, headers={"User-Agent": "rdm-studio"}) as client, \
            ThreadPoolExecutor(policy.workers, thread_name_prefix="rdm-download") as pool:
        for chunk in _chunks(list(rows)):
            todo = [r for r in chunk if r.fields["source"] not in known]
            items += [IngestItem(r.name, "duplicate", f"{r.fields['source']} is in the DB already")
                      for r in chunk if r.fields["source"] in known]
            fetched = list(pool.map(lambda r: fetch(client, r, policy), todo))
            report = store.ingest_candidates(fetched, category=category, tags=tags, who=who,
                                             metadata={r.name: r.fields for r in todo})
            items += report.items
            done += len(chunk)
            if progress:
                progress(done, len(rows))
    return IngestReport(tuple(items))
