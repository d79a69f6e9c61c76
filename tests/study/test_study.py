"""Studies: a suite in every mode with the same seeds, judged by scorers of their own, with statistics that
say when there is too little to tell; the same numbers on a rerun and through a remote worker."""

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rdm.cli import app
from rdm.db import ImageStore
from rdm.errors import WeightsMissing
from rdm.errors import BadRequestError, RunError
from rdm.generate import GenerationSettings, RemoteGenerator, generator_factories
from rdm.settings import load_settings
from rdm.study.run import StudyRequest, load_study, run_study
from rdm.study.scorers import VQA_QUESTION, make_scorer
from rdm.study.stats import MIN_PAIRS, compare_paired, mean_ci
from rdm.study.suite import bundled_suites, load_suite
from rdm.generate.worker import create_app
from worker_app import serving

SUITE = [{"id": "sofa", "prompt": "a dog on a sofa", "requirements": ["a dog", "a sofa"]},
         {"id": "toy", "prompt": "a cat with a toy"},
         {"id": "collar", "prompt": "a red collar on a puppy"}]
FAST = ["--steps", "2", "--prior-steps", "2", "--size", "64"]
MODES = ("none", "full", "subquery", "subquery+filter")


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SUITE))
    return path


@pytest.fixture(scope="module")
def judges():
    return [make_scorer("clip:tiny"), make_scorer("vqa:tiny")]


def study_cli(suite_file, out, db, *extra):
    result = CliRunner().invoke(app, ["study", "run", str(suite_file), "--seeds", "2", "--backend", "tiny",
                                      "--scorer", "clip:tiny", "--scorer", "vqa:tiny", *FAST, "--out", str(out),
                                      "--db", str(db), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def figures(study: dict) -> tuple:
    return ({m: row["scores"] for m, row in study["modes"].items()},
            [(p["a"], p["b"], p["scorer"], p["win_rate"], p["p_value"], p["n"]) for p in study["pairs"]])


def test_a_study_of_three_prompts_in_four_modes_reports_means_intervals_and_pairs(suite_file, tiny_db, tmp_path):
    study = study_cli(suite_file, tmp_path / "one", tiny_db)
    assert set(study["modes"]) == set(MODES)
    for mode in MODES:
        for scorer in ("clip:tiny", "vqa:tiny"):
            est = study["modes"][mode]["scores"][scorer]
            assert (est["n"], est["unit"], est["images"]) == (3, "prompt", 6)  # 3 prompts, 2 seeds each behind them
            assert est["ci95"][0] <= est["mean"] <= est["ci95"][1]
    assert "fidelity" not in study["modes"]["none"]["scores"]  # no references to be faithful to
    assert -1 <= study["modes"]["full"]["scores"]["fidelity"]["mean"] <= 1
    pairs = {(p["a"], p["b"], p["scorer"]) for p in study["pairs"]}
    assert ("none", "subquery+filter", "vqa:tiny") in pairs and len({(a, b) for a, b, _ in pairs}) == 6
    assert all(p["n"] == 3 and p["images"] == 6 and 0 <= p["win_rate"] <= 1
               and 0 <= p["p_value"] <= p["p_adjusted"] <= 1 for p in study["pairs"])
    assert all("too few prompts" in p["verdict"] for p in study["pairs"])  # 3 prompts can never reach p < 0.05
    assert study["test_model"] and study["requirements"]["sofa"] == ["a dog", "a sofa"]
    assert study["requirements"]["toy"]  # no explicit requirements: the decomposition's sub-queries
    # one ordinary run per prompt, every mode from the same seeds
    assert len(study["runs"]) == 3 and all(len(ids) == 1 for ids in study["runs"].values())
    seeds = {(i["prompt_id"], i["mode"]): sorted(i2["seed"] for i2 in study["images"]
                                                 if (i2["prompt_id"], i2["mode"]) == (i["prompt_id"], i["mode"]))
             for i in study["images"]}
    assert set(map(tuple, seeds.values())) == {(0, 1)}
    # the same numbers from an identical second run, and from `rdm study show`
    again = study_cli(suite_file, tmp_path / "two", tiny_db)
    assert figures(again) == figures(study)
    shown = CliRunner().invoke(app, ["study", "show", str(tmp_path / "one"), "--json"])
    assert figures(json.loads(shown.stdout)) == figures(study)
    text = CliRunner().invoke(app, ["study", "show", str(tmp_path / "one")]).output
    assert "TEST MODEL" in text and "paired comparisons" in text and "none vs full on vqa:tiny" in text
    # every score exported, one row each
    out = CliRunner().invoke(app, ["study", "export", str(tmp_path / "one"), "--csv", str(tmp_path / "s.csv")])
    assert out.exit_code == 0, out.output
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0].startswith("prompt_id,mode,seed") and len(rows) > 4 * 6 * 4
    # a second study into the same folder is refused, and nothing is overwritten
    refused = CliRunner().invoke(app, ["study", "run", str(suite_file), "--seeds", "2", "--backend", "tiny",
                                       "--scorer", "clip:tiny", *FAST, "--out", str(tmp_path / "one"),
                                       "--db", str(tiny_db)])
    assert refused.exit_code == 1 and "already holds a study" in refused.output


def test_the_same_study_through_a_remote_tiny_worker_gives_the_same_numbers(suite_file, tiny_db, tmp_path,
                                                                             generator, judges):
    request = StudyRequest(load_suite(suite_file), MODES, seeds=2, scorers=("clip:tiny", "vqa:tiny"),
                           settings=GenerationSettings(steps=2, prior_steps=2, size=(64, 64)), backend="tiny")
    store = ImageStore.open(tiny_db)
    local = run_study(request, store=store, generator=lambda: generator, out=tmp_path / "local", scorers=judges)
    with serving(create_app(generator)) as url:
        remote = run_study(request, store=store, generator=lambda: RemoteGenerator(url), out=tmp_path / "remote",
                           scorers=judges)
    assert figures(remote) == figures(local)
    # two GPU workers (RDM_WORKER_URL lists both): the runs are spread over them, the numbers stay the same
    calls = {}

    class Counted(RemoteGenerator):
        def generate(self, *args, **kwargs):
            calls[self.public_url] = calls.get(self.public_url, 0) + 1
            return super().generate(*args, **kwargs)

    from rdm.generate import KandinskyGenerator
    from rdm.generate.tiny import ensure_tiny_kandinsky

    tiny = ensure_tiny_kandinsky()  # a second worker is a second GPU with its own model: one pipeline object is
    second = KandinskyGenerator(str(tiny.prior), str(tiny.decoder), inpaint_decoder_id=str(tiny.inpaint))  # not
    # safe to run from two threads at once (one worker serialises its jobs; two in this process would not)
    with serving(create_app(generator)) as one, serving(create_app(second)) as two:
        settings = replace(load_settings(), worker_url=f"{one}, {two}")
        assert settings.worker_urls == (one, two)
        assert len(generator_factories(settings, "remote")) == 2
        spread = run_study(request, store=store, generator=[lambda u=u: Counted(u) for u in settings.worker_urls],
                           out=tmp_path / "spread", scorers=judges)
    assert figures(spread) == figures(local) and spread["workers"] == 2
    assert len(calls) == 2 and sum(calls.values()) == 3 * len(MODES)  # every run's modes, over both workers


def test_best_of_n_keeps_one_candidate_per_prompt_mode_and_seed_by_vqascore(suite_file, tiny_db, tmp_path,
                                                                            generator, judges):
    request = StudyRequest(load_suite(suite_file)[:1], ("none", "full"), seeds=2, candidates=3,
                           settings=GenerationSettings(steps=2, prior_steps=2, size=(64, 64)), backend="tiny")
    study = run_study(request, store=ImageStore.open(tiny_db), generator=lambda: generator, out=tmp_path / "bon",
                      scorers=judges)
    assert len(study["images"]) == 2 * 2 * 3 and len(study["runs"]["sofa"]) == 3
    for mode in ("none", "full"):
        for seed in (0, 1):
            group = [i for i in study["images"] if (i["mode"], i["seed"]) == (mode, seed)]
            kept = [i for i in group if i["kept"]]
            assert len(group) == 3 and len(kept) == 1
            assert kept[0]["scores"]["vqa:tiny/requirements"] == max(i["scores"]["vqa:tiny/requirements"]
                                                                     for i in group)
    est = study["modes"]["none"]["scores"]["vqa:tiny"]
    assert (est["n"], est["images"]) == (1, 2)  # the figures count kept images only, over one prompt


def test_vqascore_runs_blip_and_asks_the_papers_question(judges):
    vqa = judges[1]
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8))
              for i in range(2)]
    probs = vqa.yes_probability(images, ["a dog", "a sofa"])
    assert probs.shape == (2, 2) and ((probs > 0) & (probs < 1)).all()
    assert type(vqa.model).__name__ == "BlipForQuestionAnswering"
    assert VQA_QUESTION.format("a dog") == 'Does this figure show "a dog"? Please answer yes or no.'
    scored = vqa.score(images, "a dog on a sofa", ["a dog", "a sofa"])
    assert len(scored) == 2 and len(scored[0].requirements) == 2
    long_prompt = " ".join(["a dog on a sofa in a cozy living room"] * 30)  # past the model's positions: cut
    assert 0 < vqa.score(images[:1], long_prompt, [])[0].prompt < 1


def test_missing_scorer_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissing, match="VQA scorer .* not found.*HF_HOME"):
        make_scorer(f"vqa:{tmp_path / 'no-such-model'}")
    with pytest.raises(BadRequestError, match="unknown scorer"):
        make_scorer("bleu")


def test_bad_suites_and_requests_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "a dog"}\n{"id": "a", "prompt": "a cat"}\n')
    with pytest.raises(BadRequestError, match="bad.jsonl:2: the id 'a' is used twice"):
        load_suite(bad)
    bad.write_text('{"prompt": "a dog"}\nnot json\n')
    with pytest.raises(BadRequestError, match="bad.jsonl:2: not valid JSON"):
        load_suite(bad)
    bad.write_text('{"prompt": "a dog", "products": ["missing.png"]}\n')
    with pytest.raises(BadRequestError, match="missing.png is not there"):
        load_suite(bad)
    with pytest.raises(BadRequestError, match="no prompt suite"):
        load_suite("dev/nothing")
    suite = load_suite("dev/seed")
    with pytest.raises(BadRequestError, match="two or more modes"):
        StudyRequest(suite, ("full",))
    with pytest.raises(BadRequestError, match="--seeds"):
        StudyRequest(suite, MODES, seeds=0)
    with pytest.raises(RunError, match="no study at"):
        load_study(tmp_path)


def test_bundled_suites_are_split_and_share_no_prompt():
    assert {"dev/seed", "dev/pets", "test/pets"} <= set(bundled_suites())
    dev = {p.prompt for p in load_suite("dev/pets")} | {p.prompt for p in load_suite("dev/seed")}
    test = {p.prompt for p in load_suite("test/pets")}
    assert len(test) == 10 and not dev & test
    assert all(p.requirements for p in load_suite("test/pets"))


def test_intervals_are_fixed_and_tests_say_when_there_is_too_little_to_tell():
    values = [0.1, 0.4, 0.35, 0.2, 0.5, 0.3]
    assert mean_ci(values) == mean_ci(values)
    est = mean_ci(values)
    assert est.ci95[0] < est.mean < est.ci95[1] and est.n == 6
    assert mean_ci([0.3]).ci95 is None
    few = compare_paired("a", "b", "clip", [1, 2, 3], [0, 1, 2])
    assert few.win_rate == 1.0 and "too few prompts" in few.verdict
    n = 12
    clear = compare_paired("subquery", "none", "clip", list(np.arange(n) + 1.0), list(np.arange(n) * 0.5))
    assert clear.n == n >= MIN_PAIRS and clear.p_value < 0.05 and clear.verdict.startswith("subquery scores higher")
    even = compare_paired("a", "b", "clip", [1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 4, 3, 6, 5, 8, 7])
    assert even.win_rate == 0.5 and even.p_value > 0.05 and "no difference" in even.verdict
    tied = compare_paired("a", "b", "clip", [1.0] * 8, [1.0] * 8)
    assert tied.ties == 8 and tied.win_rate == 0.5 and tied.p_value == 1.0


def test_blind_votes_are_kept_per_reviewer_and_rank_the_modes(small_study, tmp_path):
    import shutil

    from rdm.study.votes import VoteBook, all_pairs, next_pair, ranking

    folder = tmp_path / "study"
    shutil.copytree(small_study, folder)
    study = load_study(folder)
    assert len(all_pairs(study)) == 3 * 2 * 3  # (prompt, seed) x mode pairs
    book = VoteBook(folder)
    first, done, total = next_pair(study, book, "ana")
    assert (done, total) == (0, 18)
    assert next_pair(study, VoteBook(folder), "ana")[0] == first  # a reload shows the same pair
    with pytest.raises(BadRequestError, match="type your name"):
        book.cast("  ", first, "left", study=study)
    # ana prefers subquery+filter whenever it is shown; ben agrees on the first pairs he sees
    for reviewer, limit in (("ana", 18), ("ben", 6)):
        for _ in range(limit):
            pair, _, _ = next_pair(study, VoteBook(folder), reviewer)  # each vote from a fresh handle: nothing lost
            modes = (pair.left_mode, pair.right_mode)
            choice = ("left" if pair.left_mode == "subquery+filter" else "right") if "subquery+filter" in modes \
                else "tie"
            VoteBook(folder).cast(reviewer, pair, choice, study=study)
    assert next_pair(study, book, "ana") == (None, 18, 18)
    result = ranking(study, VoteBook(folder).votes())
    best = result.modes[int(np.argmax(result.strength))]
    assert best == "subquery+filter" and result.wins["subquery+filter"] >= 12
    lo, hi = result.ci95[result.modes.index("subquery+filter")]
    assert lo <= result.strength[result.modes.index("subquery+filter")] <= hi
    assert result.counts["left"] + result.counts["right"] + result.counts["tie"] == 24
    assert result.agreement == 1.0 and result.agreement_pairs == 6
    assert set(result.metric_agreement) >= {"clip:tiny", "vqa:tiny"}
    share, n = result.metric_agreement["clip:tiny"]
    assert n > 0 and 0 <= share <= 1


def test_the_report_is_one_self_contained_page_with_every_figure(small_study, tmp_path):
    import shutil

    from rdm.study.votes import VoteBook, next_pair

    folder = shutil.copytree(small_study, tmp_path / "study")
    study = load_study(folder)
    pair, _, _ = next_pair(study, VoteBook(folder), "ana")
    VoteBook(folder).cast("ana", pair, "left", study=study)
    out = CliRunner().invoke(app, ["study", "export", str(folder), "--html", str(tmp_path / "r.html"),
                                   "--csv", str(tmp_path / "r.csv")])
    assert out.exit_code == 0, out.output
    page = (tmp_path / "r.html").read_text()
    assert "<script" not in page and "TEST MODEL" in page
    assert f"<h1>Study {folder.name}</h1>" in page and f"<title>Study {folder.name}</title>" in page  # not the id
    for part in ("95% interval", "Win rate of the row over the column", "per requirement", "Best and worst images",
                 "Bradley-Terry", "1 vote(s)"):
        assert part in page, part
    assert page.count("data:image/jpeg;base64,") == 6  # 3 best and 3 worst, inlined
    assert (tmp_path / "r.csv").read_text().startswith("prompt_id,")
    nothing = CliRunner().invoke(app, ["study", "export", str(folder)])
    assert nothing.exit_code == 1 and "nothing to export" in nothing.output


def test_a_study_of_variations_starts_every_image_from_the_prompts_product_photo(tiny_db, tmp_path, generator,
                                                                                judges):
    photo = tmp_path / "collar.png"
    Image.new("RGB", (64, 64), (20, 30, 90)).save(photo)
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"id": "collar", "prompt": "a navy collar", "products": ["collar.png"]}) + "\n")
    request = StudyRequest(load_suite(suite), ("none", "subquery+filter"), seeds=2, variation_strength=0.5,
                           settings=GenerationSettings(steps=4, prior_steps=2, size=(64, 64)), backend="tiny")
    study = run_study(request, store=ImageStore.open(tiny_db), generator=lambda: generator, out=tmp_path / "v",
                      scorers=judges)
    (run_id,) = study["runs"]["collar"]
    record = json.loads((tmp_path / "v" / "runs" / run_id / "run.json").read_text())
    assert record["variation_of"].endswith("collar.png") and record["settings"]["strength"] == 0.5
    assert study["request"]["variation_strength"] == 0.5
    with pytest.raises(BadRequestError, match="variations need a product photo"):
        StudyRequest(load_suite("dev/seed"), MODES, variation_strength=0.5)
