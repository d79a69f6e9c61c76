"""Files written before the re-layout of ``rdm/`` (main at d8abcca: a tiny-encoder DB with an edit and a
soft delete, and a two-mode run) open and read as they did: the move changed where code lives, not
what it writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rdm.cli import app
from rdm.db import ImageStore
from rdm.runs import export_html, list_runs, load_run

WRITTEN = Path(__file__).resolve().parents[1] / "data" / "main-d8abcca"
runner = CliRunner()


@pytest.fixture
def older(tmp_path) -> Path:
    """A copy: opening a DB may add tables or move data, and the checked-in files must stay as written."""
    return Path(shutil.copytree(WRITTEN, tmp_path / "older"))


def test_a_db_written_before_opens_with_its_rows_edits_and_index(older):
    store = ImageStore.open(older / "db")
    stats = store.stats()
    assert (stats.live, stats.deleted, stats.encoder) == (5, 1, "tiny")
    edited = store.get(1)
    assert edited.caption == "a caption written before the re-layout" and edited.tags == ("legacy", "kept")
    assert store.get(2).deleted_at is not None
    assert not store.check().problems
    live = [r.id for r in store.records()]
    for image_id in live:  # every live image is searchable: it is the nearest to itself
        assert store.search_vectors(store.catalog.vectors([image_id])[1], 1)[0][0].id == image_id
    assert 2 not in {h.id for h in store.similar(1, k=10)}  # the soft delete still hides it


def test_the_cli_reads_a_db_written_before(older):
    result = runner.invoke(app, ["stats", "--db", str(older / "db")])
    assert result.exit_code == 0, result.output
    assert "5" in result.output and "tiny" in result.output
    assert runner.invoke(app, ["check", "--db", str(older / "db")]).exit_code == 0


def test_a_run_written_before_loads_and_exports(older):
    (run,) = list_runs(older / "runs")
    loaded = load_run(older / "runs", run.id)
    assert [m.mode for m in loaded.modes] == ["none", "subquery+filter"]
    assert loaded.prompt == "A dog naps on a soft pillow" and loaded.settings.seed == 7
    page = export_html(loaded)
    assert "A dog naps on a soft pillow" in page and "subquery+filter" in page
