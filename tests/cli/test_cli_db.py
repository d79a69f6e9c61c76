"""The DB commands of the `rdm` CLI, as a user types them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rdm.cli import app
from rdm.settings import DEMO_PHOTOS

IMAGES = DEMO_PHOTOS / "images"
runner = CliRunner()


def rdm(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    src = folder / "src"
    src.mkdir()
    for name in ("gcompris-farm-dog.jpg", "gcompris-farm-cat.jpg", "gcompris-categories-tools-hammer-1.jpg"):
        shutil.copy(IMAGES / name, src / name)
    (src / "broken.jpg").write_bytes(b"nope")
    out = rdm("ingest", str(src), "--db", str(folder / "db"), "--encoder", "conse",
              "--category", "demo", "--tags", "a,b", "--json")
    report = json.loads(out.stdout)
    assert len(report["added"]) == 3 and report["skipped"][0]["name"] == "broken.jpg"
    return folder / "db"


def test_search_json_returns_scored_hits(db):
    hits = json.loads(rdm("search", "a dog", "--db", str(db), "-k", "2", "--json").stdout)["hits"]
    assert len(hits) == 2
    assert set(hits[0]) >= {"id", "score", "filename", "category", "tags", "caption"}
    assert hits[0]["filename"] == "gcompris-farm-dog.jpg" and hits[0]["score"] > hits[1]["score"]
    assert hits[0]["tags"] == ["a", "b"]


def test_similar_and_stats_json(db, monkeypatch):
    monkeypatch.setenv("RDM_DB", str(db))  # the env var picks the DB when --db is absent
    stats = json.loads(rdm("stats", "--json").stdout)
    assert stats["live"] == 3 and stats["deleted"] == 0
    assert stats["by_category"] == {"demo": 3} and stats["encoder"] == "conse"
    assert isinstance(stats["index_version"], int)
    hits = json.loads(rdm("similar", "1", "--json").stdout)["hits"]
    assert 1 not in [h["id"] for h in hits] and len(hits) == 2


def test_edit_delete_restore_and_check(db):
    hammer = json.loads(rdm("search", "a hammer", "--db", str(db), "-k", "1", "--json").stdout)["hits"][0]
    assert hammer["filename"] == "gcompris-categories-tools-hammer-1.jpg"
    image_id = str(hammer["id"])
    rdm("edit", image_id, "--caption", "claw hammer", "--tags", "tool", "--db", str(db))
    hit = json.loads(rdm("search", "a hammer", "--db", str(db), "-k", "1", "--json").stdout)["hits"][0]
    assert hit["caption"] == "claw hammer" and hit["tags"] == ["tool"]
    rdm("delete", image_id, "--db", str(db))
    assert json.loads(rdm("stats", "--db", str(db), "--json").stdout)["deleted"] == 1
    live = json.loads(rdm("search", "a hammer", "--db", str(db), "--json").stdout)["hits"]
    assert int(image_id) not in [h["id"] for h in live]
    rdm("restore", image_id, "--db", str(db))
    assert json.loads(rdm("stats", "--db", str(db), "--json").stdout)["live"] == 3
    assert "consistent" in rdm("check", "--db", str(db)).stdout


def test_errors_are_one_line_messages_not_tracebacks(db, tmp_path):
    missing = rdm("stats", "--db", str(tmp_path / "nowhere"), ok=False)
    assert missing.exit_code == 1 and "no DB at" in missing.output and "Traceback" not in missing.output
    bad_id = rdm("edit", "999", "--caption", "x", "--db", str(db), ok=False)
    assert "no image with id 999" in bad_id.output
    (db / "index.faiss").write_bytes(b"broken")
    damaged = rdm("check", "--db", str(db), ok=False)
    assert damaged.exit_code == 1 and "rdm check --repair" in damaged.output
    rdm("check", "--repair", "--db", str(db))
    assert "consistent" in rdm("check", "--db", str(db)).stdout


@pytest.mark.parametrize("args", [
    ["search", "   "],
    ["similar", "999"],
    ["plan", "a dog", "--preset", "exp9"],
    ["retrieve", "a dog", "--mode", "none"],
    ["generate", "a dog", "--mode", "none", "--preset", "exp4"],
    ["generate", "a dog", "--backend", "tiny", "--size", "100"],
    ["runs", "show", "no-such-run"],
    ["build-demo"],
])
def test_every_bad_input_is_one_line_and_exit_code_1(db, tmp_path, args):
    where = ["--runs-dir", str(tmp_path)] if args[0] == "runs" else ["--db", str(db)]
    if args[0] == "generate":
        where += ["--runs-dir", str(tmp_path)]
    result = runner.invoke(app, [*args, *where])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.strip().count("\n") == 0, result.output
    assert "Traceback" not in result.output


def test_a_bug_exits_2_with_the_whole_traceback(db, monkeypatch):
    from rdm.db import ImageStore

    def broken(self):
        raise KeyError("injected bug")

    monkeypatch.setattr(ImageStore, "stats", broken)
    result = runner.invoke(app, ["stats", "--db", str(db)])
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.output and "KeyError: 'injected bug'" in result.output
    assert "internal error" in result.output


def test_a_usage_mistake_is_typers_usage_message_not_a_bug():
    result = runner.invoke(app, ["generate", "a dog", "--no-such-flag"])
    assert result.exit_code == 2 and "No such option" in result.output and "internal error" not in result.output


def test_the_dashboard_command_binds_to_loopback_from_any_folder():
    from rdm.cli.generation import dashboard_argv, dashboard_env

    argv = dashboard_argv("127.0.0.1", 8501)
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("-m") + 1] == "dashboard.serve"  # run in the repo root, which the command changes to
    env = dashboard_env({"RDM_DB": "my-db", "PATH": "/bin"}, Path("/home/ad-team"))
    assert env["RDM_DB"] == "/home/ad-team/my-db" and env["RDM_RUNS"] == "/home/ad-team/runs"
