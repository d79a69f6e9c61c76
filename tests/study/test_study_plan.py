"""Pre-registration and the planner (issue 23): `rdm study plan` -> `rdm study run DIR` -> a report that says
the plan ran unchanged (or what changed); `rdm study power` on a pilot prints a prompt count; the Studies page
offers the planner before a study is submitted and shows p_adjusted."""

import json
import shutil
from dataclasses import replace

import pytest
from apptest_pages import no_traceback, page, texts
from typer.testing import CliRunner

from rdm.cli import app
from rdm.errors import BadRequestError
from rdm.study.plan import read_plan, write_plan
from rdm.study.power import pilot_variance
from rdm.study.run import StudyRequest, load_study
from rdm.study.suite import load_suite
from test_study import FAST, SUITE

PLAN = ["--modes", "none,subquery+filter", "--seeds", "1", "--backend", "tiny", "--scorer", "clip:tiny",
        "--scorer", "vqa:tiny", *FAST]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SUITE))
    return path


def test_a_planned_study_runs_its_plan_and_its_report_says_so(suite_file, tiny_db, tmp_path):
    out = tmp_path / "planned"
    planned = cli("study", "plan", suite_file, *PLAN, "--primary", "subquery+filter:none:vqa", "--out", out)
    assert planned.exit_code == 0, planned.output
    assert "registered" in planned.output and (out / "plan.json").exists() and not (out / "runs").exists()
    suite_file.write_text(json.dumps(SUITE[0]) + "\n")  # the suite edited after registration changes nothing
    refused = cli("study", "run", out, "--seeds", "2", "--db", tiny_db)
    assert refused.exit_code == 1 and "holds a plan" in refused.output and "--seeds" in refused.output
    ran = cli("study", "run", out, "--db", tiny_db, "--json")
    assert ran.exit_code == 0, ran.output
    study = json.loads(ran.stdout)
    assert study["preregistration"] == {"at": read_plan(out).created, "changes": []} and len(study["suite"]) == 3
    primary = next(p for p in study["pairs"] if p["role"] == "primary")
    assert (primary["a"], primary["b"], primary["scorer"]) == ("none", "subquery+filter", "vqa:tiny")
    line = f"pre-registered at {read_plan(out).created}, run unchanged"
    assert line in cli("study", "show", out).output
    assert cli("study", "export", out, "--html", tmp_path / "r.html").exit_code == 0
    assert line in (tmp_path / "r.html").read_text()
    # a plan edited after it was registered runs, and says so
    edited = tmp_path / "edited"
    assert cli("study", "plan", suite_file, *PLAN, "--out", edited).exit_code == 0
    plan = json.loads((edited / "plan.json").read_text())
    plan["plan"]["request"]["settings"]["guidance"] = 9.0
    (edited / "plan.json").write_text(json.dumps(plan))
    shown = cli("study", "run", edited, "--db", tiny_db)
    assert shown.exit_code == 0, shown.output
    assert "changed since: plan.json was edited after it was registered" in shown.output


def test_what_changed_from_a_plan_is_listed_and_a_bad_primary_is_refused(tmp_path):
    request = StudyRequest(load_suite("dev/seed"), ("none", "full"), seeds=2, scorers=("clip:tiny",), backend="tiny")
    plan = write_plan(tmp_path / "p", request, "full:none:clip")
    assert plan.check(request, plan.primary, plan.alpha)["changes"] == []
    changes = plan.check(replace(request, seeds=3), None, 0.01)["changes"]
    assert changes == ["request.seeds: 2 -> 3", 'primary: "full:none:clip" -> null', "analysis.alpha: 0.05 -> 0.01"]
    with pytest.raises(BadRequestError, match="does not run"):
        write_plan(tmp_path / "q", request, "subquery:none:clip")
    with pytest.raises(BadRequestError, match="no scorer of the study measures"):
        write_plan(tmp_path / "q", request, "full:none:vqa")
    with pytest.raises(BadRequestError, match="MODE_A:MODE_B:METRIC"):
        write_plan(tmp_path / "q", request, "full-none")


def test_the_planner_prints_how_many_prompts_a_difference_needs(small_study):
    v = pilot_variance(load_study(small_study))
    effect = round(2 * v.sd(v.seeds) + 1e-4, 4)  # about two SDs of a prompt's difference: a handful of prompts
    out = cli("study", "power", small_study, "--effect", effect, "--sims", 30, "--seeds", 2)
    assert out.exit_code == 0, out.output
    assert f"to detect a difference of {effect} at 80% power" in out.output
    needed = int(out.output.split("2 seed(s) per prompt: ")[1].split()[0])
    assert needed >= 6  # below 6 prompts no test reaches p < 0.05
    assert "with 3 prompts x 2 seed(s) you can detect a difference of nothing: the test needs at least 6" in out.output
    refused = cli("study", "power", small_study, "--effect", 0.02, "--compare", "none:exp9:clip:tiny")
    assert refused.exit_code == 1 and "no mode exp9" in refused.output


def test_the_studies_page_offers_the_planner_before_submitting_and_shows_p_adjusted(dashboard_env, small_study,
                                                                                    tmp_path):
    shutil.copytree(small_study, tmp_path / "studies" / "pilot")
    at = page("studies")
    assert "p_adjusted" in next(d.value for d in at.dataframe if "verdict" in d.value.columns).columns
    at.selectbox(key="studyjobs:suite").set_value("dev/pets")
    at.number_input(key="studyjobs:seeds").set_value(2).run()
    at.toggle(key="studyjobs:estimate").set_value(True).run(timeout=300)
    no_traceback(at)
    assert "With 10 prompts × 2 seed(s) you can detect a difference of" in texts(at)
    at.number_input(key="studyjobs:seeds").set_value(1).run(timeout=300)  # the estimate follows the form
    assert "With 10 prompts × 1 seed(s) you can detect a difference of" in texts(at)
