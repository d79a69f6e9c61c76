"""Blind human votes on a study: pairs of images of one prompt and seed from two modes, shown in a random
left/right order with the modes hidden; the votes in SQLite (``OUT/votes.sqlite``) with the reviewer and
the time, each committed as it is cast, so an interrupted session loses nothing.

Results: a Bradley-Terry ranking of the modes (``choix``) with bootstrap intervals over the votes, the
vote counts, how often two reviewers of one pair agree, and how often each automatic metric picks the
image the humans picked.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import numpy as np

from rdm.errors import BadRequestError

VOTES_FILE = "votes.sqlite"
CHOICES = ("left", "right", "tie", "both bad")
BT_RESAMPLES = 200
SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  reviewer TEXT NOT NULL, at TEXT NOT NULL,
  prompt_id TEXT NOT NULL, seed INTEGER NOT NULL,
  left_mode TEXT NOT NULL, right_mode TEXT NOT NULL,
  choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both bad')),
  requirement TEXT NOT NULL DEFAULT ''  -- '' for the overall vote
);
CREATE INDEX IF NOT EXISTS votes_by_reviewer ON votes (reviewer, prompt_id, seed);
"""


@dataclass(frozen=True)
class BlindPair:
    """Two images of one prompt and seed; which mode is which stays off screen until the results."""

    prompt_id: str
    prompt: str
    seed: int
    left_mode: str
    right_mode: str
    left_file: str  # relative to the study folder
    right_file: str
    requirements: tuple[str, ...]

    @property
    def key(self) -> tuple[str, int, frozenset]:
        return self.prompt_id, self.seed, frozenset((self.left_mode, self.right_mode))


class VoteBook:
    """The votes of one study folder."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / VOTES_FILE
        with closing(self._connect()) as con, con:
            con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def cast(self, reviewer: str, pair: BlindPair, choice: str, requirement: str = "") -> None:
        reviewer = reviewer_name(reviewer)
        if not reviewer:
            raise BadRequestError("type your name before voting: votes are counted per reviewer")
        if choice not in CHOICES:
            raise BadRequestError(f"unknown vote {choice!r}: one of {', '.join(CHOICES)}")
        with closing(self._connect()) as con, con:
            con.execute("INSERT INTO votes (reviewer, at, prompt_id, seed, left_mode, right_mode, choice, requirement) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (reviewer, datetime.now(timezone.utc).isoformat(timespec="seconds"), pair.prompt_id,
                         pair.seed, pair.left_mode, pair.right_mode, choice, requirement))

    def votes(self) -> list[dict]:
        with closing(self._connect()) as con:
            return [dict(r) for r in con.execute("SELECT * FROM votes ORDER BY id")]

    def done_by(self, reviewer: str) -> set[tuple[str, int, frozenset]]:
        reviewer = reviewer_name(reviewer)
        return {(v["prompt_id"], v["seed"], frozenset((v["left_mode"], v["right_mode"])))
                for v in self.votes() if v["reviewer"] == reviewer and not v["requirement"]}


def reviewer_name(text: str) -> str:
    """One spelling per reviewer: "Ann  Lee " and "Ann Lee" are one person."""
    return " ".join(text.split())


def all_pairs(study: dict) -> list[BlindPair]:
    """Every (prompt, seed, two modes) of the kept images, modes in the study's order (not yet shuffled)."""
    kept = {(i["prompt_id"], i["seed"], i["mode"]): i["file"] for i in study["images"] if i["kept"]}
    prompts = {p["id"]: p["prompt"] for p in study["suite"]}
    pairs = []
    for prompt_id, seed in sorted({(p, s) for p, s, _ in kept}):
        for a, b in combinations(study["request"]["modes"], 2):
            if (prompt_id, seed, a) in kept and (prompt_id, seed, b) in kept:
                pairs.append(BlindPair(prompt_id, prompts[prompt_id], seed, a, b, kept[(prompt_id, seed, a)],
                                       kept[(prompt_id, seed, b)], tuple(study["requirements"].get(prompt_id, ()))))
    return pairs


def next_pair(study: dict, book: VoteBook, reviewer: str) -> tuple[BlindPair | None, int, int]:
    """The reviewer's next unvoted pair, its sides shuffled, and (done, total).

    The order and the sides come from the reviewer's name and the pair, so a reload shows the same pair.
    """
    pairs = all_pairs(study)
    reviewer = reviewer_name(reviewer)
    done = book.done_by(reviewer)
    left = [p for p in pairs if p.key not in done]
    if not left:
        return None, len(pairs), len(pairs)

    def draw(pair: BlindPair) -> random.Random:
        text = f"{study['id']}|{reviewer}|{pair.prompt_id}|{pair.seed}|{pair.left_mode}|{pair.right_mode}"
        return random.Random(int(hashlib.sha256(text.encode()).hexdigest()[:16], 16))

    pair = min(left, key=lambda p: draw(p).random())
    stream = draw(pair)
    stream.random()  # the first draw chose the pair (the smallest); the next, independent of it, the sides
    if stream.random() < 0.5:
        pair = BlindPair(pair.prompt_id, pair.prompt, pair.seed, pair.right_mode, pair.left_mode, pair.right_file,
                         pair.left_file, pair.requirements)
    return pair, len(pairs) - len(left), len(pairs)


@dataclass(frozen=True)
class Ranking:
    modes: tuple[str, ...]
    strength: tuple[float, ...]  # Bradley-Terry log-strengths, mean 0
    ci95: tuple[tuple[float, float], ...]
    wins: dict
    counts: dict  # choice -> number of overall votes
    agreement: float | None  # share of reviewer pairs on one image pair who voted alike
    agreement_pairs: int
    metric_agreement: dict  # metric -> (share of decided votes the metric agrees with, n)


def ranking(study: dict, votes: list[dict]) -> Ranking:
    modes = tuple(study["request"]["modes"])
    overall = [v for v in votes if not v["requirement"]]
    counts = {c: sum(v["choice"] == c for v in overall) for c in CHOICES}
    duels = _duels(overall, modes)
    wins = {m: sum(1 for w, _ in duels if w == modes.index(m)) for m in modes}
    strength, ci = _bradley_terry(duels, len(modes))
    agreement, n_agree = _agreement(overall)
    return Ranking(modes, strength, ci, wins, counts, agreement, n_agree, _metric_agreement(study, overall))


def _duels(votes: list[dict], modes: tuple[str, ...]) -> list[tuple[int, int]]:
    """(winner, loser) indices; a tie counts as a win for each, "both bad" as neither."""
    out = []
    for v in votes:
        left, right = modes.index(v["left_mode"]), modes.index(v["right_mode"])
        if v["choice"] == "left":
            out.append((left, right))
        elif v["choice"] == "right":
            out.append((right, left))
        elif v["choice"] == "tie":
            out += [(left, right), (right, left)]
    return out


def _bradley_terry(duels: list[tuple[int, int]], n: int) -> tuple[tuple[float, ...], tuple[tuple[float, float], ...]]:
    import choix

    if not duels:
        return tuple(0.0 for _ in range(n)), tuple((0.0, 0.0) for _ in range(n))

    def fit(sample) -> np.ndarray:
        # a little regularisation keeps a mode that never lost (or never won) finite
        return np.asarray(choix.ilsr_pairwise(n, sample, alpha=0.1), np.float64)

    best = fit(duels)
    rng = np.random.default_rng(0)
    boots = np.asarray([fit([duels[i] for i in rng.integers(0, len(duels), len(duels))])
                        for _ in range(BT_RESAMPLES)])
    low, high = np.percentile(boots, [2.5, 97.5], axis=0)
    return (tuple(round(float(v), 3) for v in best),
            tuple((round(float(lo), 3), round(float(hi), 3)) for lo, hi in zip(low, high)))


def _winner(v: dict) -> str | None:
    return {"left": v["left_mode"], "right": v["right_mode"]}.get(v["choice"], v["choice"])


def _agreement(votes: list[dict]) -> tuple[float | None, int]:
    by_pair: dict[tuple, dict[str, str]] = {}
    for v in votes:  # a reviewer's last vote on a pair counts
        key = (v["prompt_id"], v["seed"], frozenset((v["left_mode"], v["right_mode"])))
        by_pair.setdefault(key, {})[v["reviewer"]] = _winner(v)
    same = total = 0
    for verdicts in by_pair.values():
        for a, b in combinations(verdicts.values(), 2):
            total += 1
            same += a == b
    return (round(same / total, 3) if total else None), total


def _metric_agreement(study: dict, votes: list[dict]) -> dict:
    scores = {(i["prompt_id"], i["seed"], i["mode"]): i["scores"] for i in study["images"] if i["kept"]}
    metrics = sorted({m for s in scores.values() for m in s})
    out = {}
    for metric in metrics:
        agree = n = 0
        for v in votes:
            if v["choice"] not in ("left", "right"):
                continue
            winner, loser = (v["left_mode"], v["right_mode"]) if v["choice"] == "left" else \
                (v["right_mode"], v["left_mode"])
            a = scores.get((v["prompt_id"], v["seed"], winner), {}).get(metric)
            b = scores.get((v["prompt_id"], v["seed"], loser), {}).get(metric)
            if a is None or b is None or a == b:
                continue
            n += 1
            agree += a > b
        out[metric] = (round(agree / n, 3) if n else None, n)
    return out
