"""A study folder is handed on and may be damaged or hostile: a tampered study.json is "damaged study", exit 1,
never a traceback or markup of its own in the report; its images are decoded only as allowed raster formats
(an EPS named .png never reaches Ghostscript); votes are only ever on the study's own pairs, and a garbage
votes file is a message."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rdm.cli import app
from rdm.errors import BadRequestError, RunError
from rdm.study.run import load_study
from rdm.study.votes import BlindPair, VoteBook, all_pairs

runner = CliRunner()
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nnewpath 0 0 moveto 32 32 lineto stroke\nshowpage\n"


@pytest.fixture
def study(small_study, tmp_path) -> Path:
    return Path(shutil.copytree(small_study, tmp_path / "study"))


def tamper(folder: Path, change) -> None:
    path = folder / "study.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set(path: str, value):
    """A change that sets ``a.b.0.c`` (keys and list positions) to ``value``."""
    def change(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return change


TAMPERINGS = {
    "seeds as text": _set("request.seeds", "A"),
    "seeds huge": _set("request.seeds", 300_000_000),
    "n as a list": _set("request.n", [1]),
    "modes not a list": _set("request.modes", "none"),
    "request gone": lambda d: d.pop("request"),
    "images not a list": _set("images", {"a": 1}),
    "an image seed as markup": _set("images.0.seed", "<script>alert(1)</script>"),
    "an image score as text": _set("images.0.scores", {"clip:tiny": "high"}),
    "an image of an unknown mode": _set("images.0.mode", "<b>other</b>"),
    "a suite entry not an object": _set("suite.0", 7),
    "a prompt not text": _set("suite.0.prompt", {"x": 1}),
    "requirements a list": _set("requirements", [1, 2]),
    "alpha as text": _set("analysis.alpha", "0.05"),
    "alpha out of range": _set("analysis.alpha", 7),
    "primary not an object": _set("analysis.primary", "a:b:c"),
    "registration changes not a list": _set("preregistration", {"at": "now", "changes": 5}),
    "scorers a number": _set("scorers", 3),
    "the whole file a list": lambda d: d.clear() or d.update({"format": 1, "request": []}),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_a_tampered_study_is_damaged_study_exit_1_everywhere(study, tmp_path, name):
    tamper(study, TAMPERINGS[name])
    with pytest.raises(RunError, match="damaged study"):
        load_study(study)
    for command in (["study", "show", str(study)], ["study", "export", str(study), "--html", str(tmp_path / "r.html")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (name, result.output)
        assert "damaged study" in result.output
    assert not (tmp_path / "r.html").exists()  # no partial page


def test_figures_of_the_file_are_not_its_own_they_come_from_its_images(study, tmp_path):
    honest = load_study(study)
    mode, metric = next(iter(honest["modes"])), next(iter(honest["modes"][next(iter(honest["modes"]))]["scores"]))

    def forge(data):
        data["modes"][mode]["scores"][metric]["n"] = "<script>alert('n')</script>"
        data["modes"][mode]["scores"][metric]["mean"] = 99.0
        data["pairs"][0]["n"] = "<script>alert('pairs')</script>"
        data["notes"] = ["<script>alert('note')</script>"]
    tamper(study, forge)
    reread = load_study(study)
    assert reread["modes"] == honest["modes"] and reread["pairs"] == honest["pairs"]
    assert runner.invoke(app, ["study", "export", str(study), "--html", str(tmp_path / "r.html")]).exit_code == 0
    page = (tmp_path / "r.html").read_text()
    assert "<script" not in page and "99.0" not in page


def test_an_eps_named_png_in_a_study_never_reaches_ghostscript(study, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    marker = tmp_path / "gs-was-run"
    (fake / "gs").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (fake / "gs").chmod(stat.S_IRWXU)
    data = json.loads((study / "study.json").read_text())
    kept = next(i for i in data["images"] if i["kept"])
    (study / kept["file"]).write_bytes(EPS)  # the kept image of the first row, replaced by PostScript
    out = subprocess.run([sys.executable, "-m", "rdm.cli", "study", "export", str(study), "--html",
                          str(tmp_path / "r.html")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert out.returncode == 0, out.stderr
    assert not marker.exists()
    assert "not a readable image" in (tmp_path / "r.html").read_text()


def test_votes_only_on_the_studys_own_pairs(study):
    loaded = load_study(study)
    pair = all_pairs(loaded)[0]
    book = VoteBook(study)
    for forged in (BlindPair(pair.prompt_id, "", pair.seed, "<b>x</b>", pair.right_mode, "", "", ()),
                   BlindPair("no-such-prompt", "", pair.seed, pair.left_mode, pair.right_mode, "", "", ()),
                   BlindPair(pair.prompt_id, "", str(pair.seed), pair.left_mode, pair.right_mode, "", "", ()),
                   BlindPair(pair.prompt_id, "", pair.seed, pair.left_mode, pair.left_mode, "", "", ())):
        with pytest.raises(BadRequestError, match="not a pair of this study"):
            book.cast("ana", forged, "left", study=loaded)
    with pytest.raises(BadRequestError, match="not a requirement"):
        book.cast("ana", pair, "left", "a requirement it never had", study=loaded)
    book.cast("ana", pair, "left", study=loaded)
    assert [v["left_mode"] for v in book.votes()] == [pair.left_mode]


def test_a_garbage_votes_file_is_a_message_and_the_study_still_opens(study, tmp_path):
    (study / "votes.sqlite").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(RunError, match="damaged votes file"):
        VoteBook(study).votes()
    result = runner.invoke(app, ["study", "export", str(study), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and "damaged votes file" in result.output
    assert runner.invoke(app, ["study", "show", str(study)]).exit_code == 0
