"""The blind reviewers' ranking (issue 23): a tie is one vote, half a win to each side; the interval resamples
votes; a mode nobody voted on is not ranked; a reviewer's last vote is their vote everywhere; agreement is
corrected for chance."""

import shutil

from rdm.study.run import load_study
from rdm.study.votes import BT_RESAMPLES, ranking

MODES = ["none", "full", "subquery", "subquery+filter"]
STUDY = {"request": {"modes": MODES}, "images": []}


def vote(n: int, reviewer: str, prompt: str, left: str, right: str, choice: str) -> dict:
    return {"id": n, "reviewer": reviewer, "at": "", "prompt_id": prompt, "seed": 0, "left_mode": left,
            "right_mode": right, "choice": choice, "requirement": ""}


def test_defect_5_ties_are_votes_and_the_bootstrap_resamples_votes():
    """5 ties none ~ full: the strengths are equal and the interval has nothing to vary (it was (-0.72, 0.53))."""
    result = ranking(STUDY, [vote(n, "ana", f"p{n}", "none", "full", "tie") for n in range(5)])
    assert result.strength[:2] == (0.0, 0.0) and result.ci95[:2] == ((0.0, 0.0), (0.0, 0.0))
    assert result.resamples == BT_RESAMPLES >= 1000 and "reviewers are not resampled" in result.bootstrap


def test_defect_6_a_mode_without_votes_is_not_ranked():
    result = ranking(STUDY, [vote(1, "ana", "p", "none", "full", "left")])
    strength = dict(zip(result.modes, result.strength))
    assert strength["none"] > strength["full"]
    assert strength["subquery"] is None and strength["subquery+filter"] is None
    assert [m for m, s, _ in result.ranked()] == ["none", "full", "subquery", "subquery+filter"]


def test_defect_8_a_reviewers_last_vote_counts_once_everywhere_and_a_tie_is_nobodys_win():
    votes = [vote(1, "ana", "p", "none", "full", "left"), vote(2, "ana", "p", "none", "full", "left"),  # a double click
             vote(3, "ben", "q", "none", "full", "right")]
    result = ranking(STUDY, votes)
    assert result.strength[0] == result.strength[1]  # one win each: the double click does not make none stronger
    assert result.votes == 2 and result.replaced == 1 and result.wins["none"] == 1 and result.counts["left"] == 1
    tie = ranking(STUDY, [vote(1, "ana", "p", "none", "full", "tie")])
    assert tie.wins == {m: 0 for m in MODES} and tie.ties["none"] == tie.ties["full"] == 1


def test_defect_8_agreement_is_corrected_for_chance():
    """Two reviewers who always pick the left image agree half the time by chance alone on shuffled sides."""
    pairs = [("none", "full"), ("full", "subquery"), ("none", "subquery"), ("full", "none")]
    votes = [vote(2 * k + r, who, f"p{k}", *(pairs[k] if r == 0 else pairs[k][::-1]), "left")
             for k in range(4) for r, who in enumerate(("ana", "ben"))]
    result = ranking(STUDY, votes)
    assert result.agreement == 0.0 and result.kappa_kind == "Cohen's kappa" and result.kappa < 0
    three = ranking(STUDY, votes + [vote(20 + k, "cy", f"p{k}", *pairs[k], "left") for k in range(4)])
    assert three.kappa_kind == "Fleiss' kappa" and three.kappa is not None


def test_the_report_and_page_say_no_votes_for_an_unvoted_mode(small_study, tmp_path):
    from rdm.study.report import study_html
    from rdm.study.votes import VoteBook, all_pairs

    folder = shutil.copytree(small_study, tmp_path / "study")
    study = load_study(folder)
    pair = next(p for p in all_pairs(study) if {p.left_mode, p.right_mode} == {"none", "full"})
    VoteBook(folder).cast("ana", pair, "left", study=study)
    page = study_html(study, folder)
    assert "no votes" in page and "Cohen" not in page and "bootstrap resamples" in page
