"""Blind human votes on a study: pairs of images of one prompt and seed from two modes, shown in a random
left/right order with the modes hidden; the votes in SQLite (``OUT/votes.sqlite``) with the reviewer and
the time, each committed as it is cast, so an interrupted session loses nothing.

Results, counting a reviewer's last vote on a pair as their vote everywhere: a Bradley-Terry ranking of the
modes (``choix``; a tie is half a win each) with percentile intervals from resampling the votes, modes without
votes left unranked; the vote counts; how often two reviewers of one pair agree, raw and chance-corrected
(Cohen's or Fleiss' kappa, statsmodels); and how often each automatic metric picks the image the humans picked.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Iterator

import numpy as np

from rdm.errors import BadRequestError, RunError
from rdm.study.stats import sig

VOTES_FILE = "votes.sqlite"
CHOICES = ("left", "right", "tie", "both bad")
BT_RESAMPLES = 1000  # enough for stable 2.5/97.5 percentiles
BT_REGULARISATION = 0.1  # keeps a mode that never lost (or never won) finite
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
        with self._open() as con, con:
            con.executescript(SCHEMA)

    @contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        """A connection; a file that is not this table (damaged, or replaced) is a message, not a crash."""
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as con:
                con.row_factory = sqlite3.Row
                yield con
        except sqlite3.DatabaseError as exc:
            raise RunError(f"damaged votes file {self.path}: {exc}; move it aside to start the votes anew "
                           "(the study itself is intact)") from exc

    def cast(self, reviewer: str, pair: BlindPair, choice: str, requirement: str = "", *, study: dict) -> None:
        """One vote on one of ``study``'s pairs (a pair, mode or requirement it does not have is refused)."""
        reviewer = reviewer_name(reviewer)
        if not reviewer:
            raise BadRequestError("type your name before voting: votes are counted per reviewer")
        if choice not in CHOICES:
            raise BadRequestError(f"unknown vote {choice!r}: one of {', '.join(CHOICES)}")
        known = {p.key: p for p in all_pairs(study)}.get(pair.key)
        if known is None or not isinstance(pair.seed, int) or pair.left_mode == pair.right_mode:
            raise BadRequestError(f"prompt {pair.prompt_id!r}, seed {pair.seed!r}, modes {pair.left_mode!r} and "
                                  f"{pair.right_mode!r} are not a pair of this study: vote on the pairs it shows")
        if requirement and requirement not in known.requirements:
            raise BadRequestError(f"{requirement!r} is not a requirement of prompt {pair.prompt_id!r}")
        with self._open() as con, con:
            con.execute("INSERT INTO votes (reviewer, at, prompt_id, seed, left_mode, right_mode, choice, requirement) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (reviewer, datetime.now(timezone.utc).isoformat(timespec="seconds"), pair.prompt_id,
                         pair.seed, pair.left_mode, pair.right_mode, choice, requirement))

    def votes(self) -> list[dict]:
        with self._open() as con:
            rows = [dict(r) for r in con.execute("SELECT * FROM votes ORDER BY id")]
        for row in rows:  # a row written by hand, not by ``cast``
            if not (all(isinstance(row[k], str) for k in ("reviewer", "prompt_id", "left_mode", "right_mode",
                                                         "requirement")) and isinstance(row["seed"], int)
                    and row["choice"] in CHOICES):
                raise RunError(f"damaged votes file {self.path}: vote {row['id']} is not a vote cast here; "
                               "move the file aside to start the votes anew")
        return rows

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


def current_votes(votes: list[dict]) -> list[dict]:
    """A reviewer's last vote on a pair (and requirement) is their vote: a changed mind or a double click
    counts once, in the ranking, the counts and the agreement alike."""
    last = {}
    for v in sorted(votes, key=lambda v: v["id"]):
        last[(v["reviewer"], v["prompt_id"], v["seed"], frozenset((v["left_mode"], v["right_mode"])),
              v["requirement"])] = v
    return sorted(last.values(), key=lambda v: v["id"])


@dataclass(frozen=True)
class Ranking:
    modes: tuple[str, ...]
    strength: tuple[float | None, ...]  # Bradley-Terry log-strengths, mean 0 over the ranked; None: no votes
    ci95: tuple[tuple[float, float] | None, ...]
    wins: dict  # mode -> votes it won outright (a tie is nobody's win)
    ties: dict  # mode -> ties it was in
    counts: dict  # choice -> overall votes counted
    agreement: float | None  # share of reviewer pairs on one image pair who voted alike
    agreement_pairs: int
    kappa: float | None  # the same, corrected for chance; None: too few or one category only
    kappa_kind: str  # Cohen's kappa (two reviewers), Fleiss' kappa (more), or ""
    metric_agreement: dict  # metric -> (share of decided votes the metric agrees with, n)
    votes: int  # counted: each reviewer's last vote per pair
    replaced: int  # earlier votes a later one of the same reviewer replaced
    resamples: int = BT_RESAMPLES
    bootstrap: str = ("resamples votes (a tie stays one vote); reviewers are not resampled, so with few reviewers "
                      "the interval leaves out how much reviewers differ")

    def ranked(self) -> list[tuple[str, float | None, tuple[float, float] | None]]:
        """(mode, strength, interval), strongest first; the modes without votes last, unranked."""
        rows = list(zip(self.modes, self.strength, self.ci95))
        return sorted((r for r in rows if r[1] is not None), key=lambda r: -r[1]) + [r for r in rows if r[1] is None]


def ranking(study: dict, votes: list[dict]) -> Ranking:
    modes = tuple(study["request"]["modes"])
    overall = [v for v in current_votes(votes) if not v["requirement"]]
    counts = {c: sum(v["choice"] == c for v in overall) for c in CHOICES}
    outcomes = _outcomes(overall, modes)
    strength, ci = _bradley_terry(outcomes)
    wins, ties = ((outcomes == share).sum(axis=(0, 2)) for share in (1.0, 0.5))
    agreement, n_agree, kappa, kind = _agreement(overall, modes)
    return Ranking(modes, strength, ci, dict(zip(modes, map(int, wins))), dict(zip(modes, map(int, ties))), counts,
                   agreement, n_agree, kappa, kind,
                   _metric_agreement(study, overall), len(overall),
                   sum(not v["requirement"] for v in votes) - len(overall))


def _outcomes(votes: list[dict], modes: tuple[str, ...]) -> np.ndarray:
    """Per vote a matrix of wins, ``[vote, i, j]`` for i over j: 1 to the winner, a tie half to each, "both
    bad" nothing (it says no image was good enough, not which was better)."""
    out = []
    for v in votes:
        share = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}.get(v["choice"])
        if share is not None:
            won = np.zeros((len(modes), len(modes)))
            left, right = modes.index(v["left_mode"]), modes.index(v["right_mode"])
            won[left, right], won[right, left] = share
            out.append(won)
    return np.asarray(out).reshape(-1, len(modes), len(modes))


def _bradley_terry(per_vote: np.ndarray) -> tuple[tuple[float | None, ...], tuple[tuple[float, float] | None, ...]]:
    """The fit on every vote and a percentile interval from BT_RESAMPLES resamples of the votes; a mode in no
    vote gets neither (None), and the strengths are centred on the modes that have votes."""
    import choix

    votes, n = per_vote.shape[:2]
    if not votes:
        return (None,) * n, (None,) * n
    ranked = np.flatnonzero((per_vote.sum(axis=(0, 2)) + per_vote.sum(axis=(0, 1))) > 0)

    def fit(weights: np.ndarray) -> np.ndarray:
        wins = np.einsum("v,vij->ij", weights, per_vote)[np.ix_(ranked, ranked)]
        params = np.asarray(choix.ilsr_pairwise_dense(wins, alpha=BT_REGULARISATION), np.float64)
        return params - params.mean()

    rng = np.random.default_rng(0)  # fixed: the same votes give the same intervals
    resampled = rng.multinomial(votes, np.full(votes, 1 / votes), size=BT_RESAMPLES)  # how often each vote is drawn
    boots = np.asarray([fit(w) for w in resampled])
    best = fit(np.ones(votes))
    low, high = np.percentile(boots, [2.5, 97.5], axis=0)
    strength: list[float | None] = [None] * n
    ci: list[tuple[float, float] | None] = [None] * n
    for k, i in enumerate(ranked):
        strength[i], ci[i] = _tidy(best[k]), (_tidy(low[k]), _tidy(high[k]))
    return tuple(strength), tuple(ci)


def _tidy(x: float) -> float:
    """Significant digits, and no float dust: a strength of 1e-17 is 0."""
    return sig(0.0 if abs(x) < 1e-9 else float(x), 3)


def _winner(v: dict) -> str | None:
    return {"left": v["left_mode"], "right": v["right_mode"]}.get(v["choice"], v["choice"])


def _agreement(votes: list[dict], modes: tuple[str, ...]) -> tuple[float | None, int, float | None, str]:
    """Raw agreement over every two reviewers of one image pair, and kappa over the pairs reviewed more than
    once: Cohen's when exactly two reviewers did them, else Fleiss' over the pairs with the most usual number
    of reviewers (Fleiss' needs the same number per pair). Categories: the study's first mode of the pair
    better, the second, tie, both bad."""
    from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

    by_pair: dict[tuple, dict[str, int]] = {}
    for v in votes:
        first, second = sorted((v["left_mode"], v["right_mode"]), key=modes.index)
        winner = _winner(v)
        by_pair.setdefault((v["prompt_id"], v["seed"], first, second), {})[v["reviewer"]] = \
            (first, second, "tie", "both bad").index(winner)
    shared = [verdicts for verdicts in by_pair.values() if len(verdicts) > 1]
    same = sum(a == b for verdicts in shared for a, b in combinations(verdicts.values(), 2))
    total = sum(len(verdicts) * (len(verdicts) - 1) // 2 for verdicts in shared)
    if not total:
        return None, 0, None, ""
    reviewers = {r for verdicts in shared for r in verdicts}
    with np.errstate(divide="ignore", invalid="ignore"):
        if len(reviewers) == 2:
            one, two = sorted(reviewers)
            table = np.zeros((4, 4))
            for verdicts in shared:
                table[verdicts[one], verdicts[two]] += 1
            kappa, kind = float(cohens_kappa(table, return_results=False)), "Cohen's kappa"
        else:
            size = max({len(v) for v in shared}, key=lambda k: (sum(len(v) == k for v in shared), k))
            table = np.asarray([np.bincount(list(v.values()), minlength=4) for v in shared if len(v) == size])
            kappa, kind = float(fleiss_kappa(table)), "Fleiss' kappa"
    return sig(same / total, 3), total, _tidy(kappa) if np.isfinite(kappa) else None, kind


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
        out[metric] = (sig(agree / n, 3) if n else None, n)
    return out


def votes_text(result: Ranking, votes: list[dict]) -> str:
    """The votes behind a ranking in one sentence: counted, replaced, agreement raw and chance-corrected,
    and what the intervals resample."""
    counts = ", ".join(f"{n} {c}" for c, n in result.counts.items())
    replaced = f"; {result.replaced} earlier vote(s) replaced by the same reviewer's last" if result.replaced else ""
    agreement = (f"reviewers agreed on {result.agreement:.0%} of {result.agreement_pairs} doubly reviewed pairs"
                 + (f" ({result.kappa_kind} {result.kappa:.2f}; 0 is chance, 1 full agreement)"
                    if result.kappa is not None else " (kappa: too little variety to correct for chance)")
                 if result.agreement is not None else "no pair was reviewed twice yet")
    return (f"{len(votes)} vote(s) from {len({v['reviewer'] for v in votes})} reviewer(s), {result.votes} counted "
            f"(each reviewer's last vote per pair{replaced}): {counts}; a tie is half a win to each side in the "
            f"ranking and no win in 'wins'; {agreement}. Intervals: {result.resamples} bootstrap resamples that "
            f"{result.bootstrap}.")
