"""Bring embeddings computed elsewhere: a team embeds millions of images on a cluster (clip-retrieval's
``inference`` runs on Spark) and curates and retrieves them here.

Two layouts are read:

- clip-retrieval's output folder: ``img_emb/img_emb_N.npy`` with ``metadata/metadata_N.parquet`` holding
  one row per embedding, in order (``image_path``, and ``caption`` / ``url`` when it had them);
- a plain ``.npy`` (one row per image) with a parquet or CSV table of the same length: ``path`` (or
  ``image_path``) and optionally ``caption``, ``tags``, ``category``, ``author``, ``source``.

Each row's image file is stored as an upload is (checked, hashed, thumbnailed), its embedding as given
(L2-normalised); a row whose image is missing, unreadable or already in the DB is reported, the others
kept. The embeddings must come from the DB's encoder (checked by name and dimension), or text queries
would be compared with vectors from another model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rdm.db import ImageStore
from rdm.db.records import IngestReport, ProgressFn
from rdm.encoders import encoder_dim
from rdm.errors import BadRequestError, EncoderMismatch
from rdm.common.sources import Candidate, IngestItem, read_file
from rdm.common.tables import read_table

SHARD = re.compile(r"_(\d+)\.(npy|parquet)$")
META_COLUMNS = ("caption", "tags", "category", "author", "source", "licence")


@dataclass(frozen=True)
class EmbeddingTable:
    """Rows of (image path, embedding, metadata), as read from disk."""

    paths: tuple[str, ...]  # where each image is
    names: tuple[str, ...]  # as the table names it: the DB's file name
    vectors: np.ndarray  # (n, dim) float32
    metadata: tuple[dict, ...]
    layout: str  # "clip-retrieval" or "npy + table"


def read_embeddings(source: str | Path, table: str | Path | None = None) -> EmbeddingTable:
    source = Path(source)
    if source.is_dir():
        return _clip_retrieval(source)
    if source.suffix == ".npy":
        if table is None:
            raise BadRequestError(f"{source} needs its table of paths: add --metadata FILE.parquet|.csv "
                                  "with one row per embedding (a 'path' column)")
        return _plain(source, Path(table))
    raise BadRequestError(f"{source} is neither a clip-retrieval output folder (img_emb/ + metadata/) nor a .npy file")


def _shards(folder: Path, pattern: str) -> dict[int, Path]:
    return {int(m.group(1)): p for p in sorted(folder.glob(pattern)) if (m := SHARD.search(p.name))}


def _clip_retrieval(folder: Path) -> EmbeddingTable:
    embeddings = _shards(folder / "img_emb", "img_emb_*.npy")
    tables = _shards(folder / "metadata", "metadata_*.parquet")
    if not embeddings:
        raise BadRequestError(f"{folder} has no img_emb/img_emb_N.npy: point at clip-retrieval inference's "
                              "--output_folder")
    missing = sorted(set(embeddings) - set(tables))
    if missing:
        raise BadRequestError(f"{folder}: img_emb_{missing[0]}.npy has no metadata/metadata_{missing[0]}.parquet; "
                              "rerun clip-retrieval with --enable_metadata or give a table with a .npy")
    paths, names, vectors, metadata = [], [], [], []
    for n in sorted(embeddings):
        part = _load(embeddings[n])
        if vectors and part.shape[1] != vectors[0].shape[1]:
            raise BadRequestError(f"{embeddings[n].name} holds {part.shape[1]}-d embeddings but the shards before it "
                                  f"{vectors[0].shape[1]}-d: every shard must come from the same model")
        rows = read_table(tables[n])
        if len(rows) != len(part):
            raise BadRequestError(f"{tables[n].name} has {len(rows)} rows for {len(part)} embeddings in "
                                  f"{embeddings[n].name}: they must be one to one")
        p, k, m = _rows(rows, tables[n], folder)
        paths += p
        names += k
        metadata += m
        vectors.append(part)
    return EmbeddingTable(tuple(paths), tuple(names), np.concatenate(vectors), tuple(metadata), "clip-retrieval")


def _plain(npy: Path, table: Path) -> EmbeddingTable:
    vectors = _load(npy)
    rows = read_table(table)
    if len(rows) != len(vectors):
        raise BadRequestError(f"{table.name} has {len(rows)} rows for {len(vectors)} embeddings in {npy.name}")
    paths, names, metadata = _rows(rows, table, table.parent)
    return EmbeddingTable(tuple(paths), tuple(names), vectors, tuple(metadata), "npy + table")


def _load(path: Path) -> np.ndarray:
    """A .npy of (images, dim) floats. Its header is checked against the file's size before anything is read, so
    a header declaring more rows than the file holds (10^12 of them) is refused, not allocated."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = read_header(fh)
            data_bytes = path.stat().st_size - fh.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise BadRequestError(f"{path} is not a readable .npy of embeddings ({exc})") from exc
    if len(shape) != 2 or dtype.kind != "f":
        raise BadRequestError(f"{path} holds a {dtype} array of shape {shape}: expected (images, dim) floats")
    if not shape[0] or not shape[1]:
        raise BadRequestError(f"{path} holds no embeddings (shape {shape}): export them again")
    if data_bytes < shape[0] * shape[1] * dtype.itemsize:
        raise BadRequestError(f"{path} declares {shape[0]:,} x {shape[1]:,} {dtype} values but holds only {data_bytes:,} "
                              "bytes of them: the file is cut short or damaged; export it again")
    return np.load(path, mmap_mode="r", allow_pickle=False).astype(np.float32)  # read once, as float32


def _rows(frame, table: Path, root: Path) -> tuple[list[str], list[str], list[dict]]:
    column = next((c for c in ("path", "image_path", "filepath") if c in frame.columns), None)
    if column is None:
        raise BadRequestError(f"{table.name} has no 'path' or 'image_path' column (it has "
                              f"{', '.join(map(str, frame.columns))}): the images themselves are stored in the DB")
    paths, names, metadata = [], [], []
    for record in frame.to_dict("records"):
        path = Path(str(record[column]))
        paths.append(str(path if path.is_absolute() else root / path))
        names.append(str(record[column]))
        meta = {k: str(record[k]) for k in META_COLUMNS if k in record and record[k] == record[k] and record[k] != ""}
        if "url" in record and record["url"] == record["url"]:
            meta.setdefault("source", str(record["url"]))
        metadata.append(meta)
    return paths, names, metadata


def import_embeddings(store: ImageStore, table: EmbeddingTable, encoder: str, *, category: str | None = None,
                      tags: str | Sequence[str] | None = None, who: str = "",
                      progress: ProgressFn | None = None) -> IngestReport:
    """Store every row's image with its given embedding; checks the encoder's name and dimension first."""
    # 1. the embeddings must be the DB's own kind of vectors
    dim, recorded = int(store.meta("dim")), store.encoder_name
    if encoder != recorded:
        raise EncoderMismatch(f"the DB at {store.path} was built with encoder {recorded!r}, these embeddings are "
                              f"declared {encoder!r}: import into a DB of that encoder (a new --db), or embed the "
                              "images with `rdm ingest` instead")
    if table.vectors.shape[1] != dim:
        raise EncoderMismatch(f"the embeddings have dimension {table.vectors.shape[1]}, the DB's encoder {recorded!r} "
                              f"makes {dim}: they cannot come from that model")
    # 2. names unique per row; a zero vector has no direction to compare
    norms = np.linalg.norm(table.vectors, axis=1)
    vectors, metadata, candidates, items = {}, {}, [], []
    for path, given, vector, norm, meta in zip(table.paths, table.names, table.vectors, norms, table.metadata):
        name = given if given not in vectors else f"{given}#{len(vectors)}"
        if not np.isfinite(norm) or norm == 0:
            items.append(IngestItem(name, "skipped", "its embedding is zero or not finite"))
            continue
        vectors[name] = (vector / norm).astype(np.float32)
        metadata[name] = meta
        candidates.append(Candidate(name, lambda p=Path(path): read_file(p)))
    # 3. the usual ingest, with the given vectors in place of the encoder
    report = store.ingest_candidates(candidates, category=category, tags=tags, metadata=metadata, who=who,
                                     vectors=vectors, progress=progress)
    return IngestReport(tuple(items) + report.items)


@dataclass(frozen=True)
class DeclaredEncoder:
    """The encoder the embeddings were made with, as a new DB records it (no model is loaded to import)."""

    name: str
    dim: int


KNOWN_ENCODERS = re.compile(r"^(tiny|conse|open_clip(:.+)?)$")


def store_for(path: str | Path, encoder: str, dim: int, source: str | Path) -> ImageStore:
    """The DB at ``path``, created for ``encoder`` when there is none (text queries will load that model)."""
    path = Path(path)
    if (path / "meta.sqlite").exists():
        return ImageStore.open(path)
    if not KNOWN_ENCODERS.match(encoder):
        raise BadRequestError(f"unknown encoder {encoder!r}: name the model the embeddings came from, e.g. "
                              "open_clip:ViT-B-32/laion2b_s34b_b79k (queries are embedded with it)")
    if dim != (made := encoder_dim(encoder)):  # else every text query, embedded by that model, would fail
        raise EncoderMismatch(f"the embeddings in {source} are {dim}-d, but {encoder} makes {made}-d vectors: they "
                              "cannot come from that model. Name the model they came from with --encoder")
    ImageStore.create(path, DeclaredEncoder(encoder, dim),
                      encoder_reason=f"embeddings imported from {source}, computed elsewhere with {encoder}")
    return ImageStore.open(path)
