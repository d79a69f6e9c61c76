"""Reading a user's table (a URL list, an embeddings' metadata): CSV, TSV or parquet, bounded.

The delimiter comes from the file's suffix (``.csv`` comma, ``.tsv``/``.tsv000`` tab), and only for another
suffix from a sniffer limited to real delimiters: a free sniffer reads a one-column ``url`` file as split on
"u". The bytes are read with a bound first (a list pointed at ``/dev/zero`` has no size to stat), the rows
counted after; both limits say what to do.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rdm.errors import BadRequestError

MAX_TABLE_BYTES = 128 << 20  # Unsplash Lite's photos.tsv000 (25k rows) is a fraction of this; millions of URLs: img2dataset
MAX_TABLE_ROWS = 1_000_000
DELIMITERS = ",\t;|"


def read_table(path: Path, *, max_bytes: int | None = None, max_rows: int | None = None):
    """The table at ``path`` as a pandas DataFrame of strings (parquet keeps its types); the bounds default to
    MAX_TABLE_BYTES and MAX_TABLE_ROWS."""
    import pandas as pd

    path = Path(path)
    max_bytes, max_rows = max_bytes or MAX_TABLE_BYTES, max_rows or MAX_TABLE_ROWS
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise BadRequestError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise BadRequestError(f"{path} is over {max_bytes >> 20} MB: split it into smaller lists and run each")
    if not data.strip():
        raise BadRequestError(f"{path} is empty: a table needs a header row and one row per image")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), sep=_delimiter(path, data), dtype=str, keep_default_na=True)
    except (ValueError, TypeError, OSError, csv.Error) as exc:  # pandas' and pyarrow's parse errors derive from these
        raise BadRequestError(f"{path} cannot be read as a table ({exc})") from exc
    if len(frame) > max_rows:
        raise BadRequestError(f"{path} has {len(frame):,} rows, over the {max_rows:,} one list may hold: split it")
    return frame


def _delimiter(path: Path, data: bytes) -> str:
    if path.suffix == ".csv":
        return ","
    if path.suffix in (".tsv", ".tsv000") or path.name.endswith(".tsv000"):
        return "\t"
    head = data[:65536].decode("utf-8", "replace")
    try:
        return csv.Sniffer().sniff(head, delimiters=DELIMITERS).delimiter
    except csv.Error:  # one column: nothing to split on
        return ","
