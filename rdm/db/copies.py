"""Copies of one photo: pixel-level near-duplicates found by perceptual hashes.

An embedding puts different photos of one kind close together (ConSE gives four different dams a
cosine of 1.000), so it cannot tell a copy from a look-alike. A perceptual hash (imagehash's pHash:
the low frequencies of the 32x32 DCT of the picture, 64 bits) changes little when a photo is
resized, re-encoded or slightly brightened and a lot for another photograph. Hashes are taken from
each image's 256-px thumbnail, so ingest and a later backfill hash the same pixels.

The hash sees structure, not colour: two plain fills of different colours hash alike. So each hash
carries the picture's mean colour as well, and copies must also agree on it (within
``MAX_COLOUR_SHIFT`` per channel: a re-encode or a light edit moves it a few levels).

Groups form around a leader (the largest image, the one worth keeping): every image within
``max_distance`` bits of a leader joins it; a copy never chains to a copy of a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from rdm.common.sources import open_image, read_file
from rdm.errors import BadImage

DEFAULT_MAX_DISTANCE = 8  # bits of 64: resized and re-encoded copies measured 0-4, other photos 20+
MAX_COLOUR_SHIFT = 32  # of 255, per channel of the mean colour
PHASH_DIGITS = 16  # the pHash's 64 bits; six more hex digits hold the mean colour
BLOCK_ROWS = 512  # rows of the pairwise distance matrix computed at once (512 x 20k bytes)


@dataclass(frozen=True)
class CopyGroup:
    leader: int  # the image to keep: the largest of the group
    members: tuple[int, ...]  # the copies, nearest first
    distances: tuple[int, ...]  # Hamming distance of each member's hash to the leader's

    def to_dict(self) -> dict:
        return {"leader": self.leader, "members": list(self.members), "distances": list(self.distances)}


def perceptual_hash(image: Image.Image) -> str:
    """pHash (16 hex digits) and mean RGB colour (6 hex digits) of an image."""
    import imagehash  # with SciPy and PyWavelets behind it: loaded only when hashing

    rgb = image.convert("RGB")
    mean = np.asarray(rgb, np.float64).reshape(-1, 3).mean(axis=0).round().astype(int)
    return str(imagehash.phash(rgb)) + "".join(f"{c:02x}" for c in mean)


def is_copy(a: str, b: str, *, max_distance: int = DEFAULT_MAX_DISTANCE) -> bool:
    """Whether two hashes (``perceptual_hash``) are copies of one photo."""
    colours = [[int(h[i:i + 2], 16) for i in range(PHASH_DIGITS, PHASH_DIGITS + 6, 2)] for h in (a, b)]
    return ((int(a[:PHASH_DIGITS], 16) ^ int(b[:PHASH_DIGITS], 16)).bit_count() <= max_distance
            and max(abs(x - y) for x, y in zip(*colours)) <= MAX_COLOUR_SHIFT)


def copy_groups(ids: Sequence[int], hashes: Sequence[str], pixels: Sequence[int], *,
                max_distance: int = DEFAULT_MAX_DISTANCE) -> list[CopyGroup]:
    """Groups of copies, largest group first. ``pixels`` (width x height) picks each group's leader."""
    if not len(ids):
        return []
    ids = np.asarray(ids, np.int64)
    bits = np.array([int(h[:PHASH_DIGITS], 16) for h in hashes], dtype=np.uint64)
    colours = np.array([[int(h[i:i + 2], 16) for i in range(PHASH_DIGITS, PHASH_DIGITS + 6, 2)] for h in hashes],
                       dtype=np.int16)
    # 1. every pair within the distance, block by block (a popcount of XORs: 20k x 20k in about a second)
    close: dict[int, list[tuple[int, int]]] = {}
    for start in range(0, len(ids), BLOCK_ROWS):
        distance = np.bitwise_count(bits[start:start + BLOCK_ROWS, None] ^ bits[None, :])
        rows, cols = np.nonzero(distance <= max_distance)
        keep = (rows + start != cols) & (np.abs(colours[rows + start] - colours[cols]).max(axis=1) <= MAX_COLOUR_SHIFT)
        for r, c in zip(rows[keep] + start, cols[keep]):
            close.setdefault(int(r), []).append((int(distance[r - start, c]), int(c)))
    # 2. leaders, largest first; each image joins one group, never a copy of a copy
    grouped: set[int] = set()
    groups = []
    for leader in sorted(close, key=lambda i: (-int(pixels[i]), int(ids[i]))):
        if leader in grouped:
            continue
        members = sorted((d, int(ids[c]), c) for d, c in close[leader] if c not in grouped)
        if not members:
            continue
        grouped.add(leader)
        grouped.update(c for _, _, c in members)
        groups.append(CopyGroup(leader=int(ids[leader]), members=tuple(i for _, i, _ in members),
                                distances=tuple(d for d, _, _ in members)))
    return sorted(groups, key=lambda g: (-len(g.members), g.leader))


def find_copies(store, *, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[CopyGroup]:
    """Copy groups among the live images of ``store`` (an ``rdm.db.ImageStore``). Images ingested
    before hashes were kept are hashed now, from their thumbnails, and the hashes are saved."""
    missing = []
    for rec in store.records(ids=store.catalog.ids_without_hash()):
        try:  # a file of the DB folder: opened by the one allow-listed decoder, like any upload
            with open_image(read_file(store.thumbnail_file(rec)), f"thumbnail of image {rec.id}") as thumb:
                missing.append((rec.id, perceptual_hash(thumb)))
        except (OSError, BadImage):
            continue  # no thumbnail, or a damaged one: `rdm check --repair` rebuilds it; no hash until then
    if missing:
        store.catalog.set_hashes(missing)
    known = store.catalog.hashes()
    ids = sorted(known)
    return copy_groups(ids, [known[i][0] for i in ids], [known[i][1] for i in ids], max_distance=max_distance)
