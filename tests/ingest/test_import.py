"""Embeddings computed elsewhere: clip-retrieval's output layout (shards of img_emb/*.npy with
metadata/*.parquet) and a plain .npy with a CSV, imported with their captions; the encoder and the
dimension are checked; rows without an image or with a zero vector are reported, the rest kept."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from rdm.cli import app
from rdm.db import ImageStore
from rdm.errors import BadRequestError, EncoderMismatch
from rdm.ingest.embeddings import import_embeddings, read_embeddings
from tiny_db import demo_files


@pytest.fixture
def clip_retrieval_output(tmp_path, tiny_encoder):
    """What `clip-retrieval inference --enable_metadata` writes, for 6 demo photos in two shards."""
    photos = demo_files(2)[:6]
    images = tmp_path / "images"
    images.mkdir()
    names = []
    for photo in photos:
        (images / photo.name).write_bytes(photo.read_bytes())
        names.append(photo.name)
    vectors = tiny_encoder.encode_images([Image.open(p).convert("RGB") for p in photos])
    out = tmp_path / "embeddings"
    (out / "img_emb").mkdir(parents=True)
    (out / "metadata").mkdir()
    for shard, rows in enumerate((range(0, 4), range(4, 6))):
        rows = list(rows)
        np.save(out / "img_emb" / f"img_emb_{shard}.npy", vectors[rows].astype(np.float16))
        pd.DataFrame({"image_path": [str(images / names[r]) for r in rows],
                      "caption": [f"caption of {names[r]}" for r in rows]}).to_parquet(
            out / "metadata" / f"metadata_{shard}.parquet")
    return out, names, vectors


def test_a_clip_retrieval_folder_round_trips_with_captions(clip_retrieval_output, tmp_path):
    out, names, vectors = clip_retrieval_output
    result = CliRunner().invoke(app, ["import-embeddings", str(out), "--encoder", "tiny", "--db",
                                      str(tmp_path / "db"), "--category", "imported", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["added"]) == 6 and not report["skipped"]
    store = ImageStore.open(tmp_path / "db")
    assert store.encoder_name == "tiny" and store.stats().live == 6
    records = {r.filename.rsplit("/", 1)[-1]: r for r in store.records()}
    assert records[names[0]].caption == f"caption of {names[0]}" and records[names[0]].category == "imported"
    ids, stored = store.vectors()
    by_name = {records[n].id: v for n, v in zip(names, vectors)}
    for image_id, vector in zip(ids, stored):
        expected = by_name[int(image_id)] / np.linalg.norm(by_name[int(image_id)])
        np.testing.assert_allclose(vector, expected, atol=2e-3)  # float16 shards, renormalised
    # the imported vectors search like ingested ones: each photo finds itself first
    first = records[names[0]].id
    assert store.search_vectors(store.vectors([first])[1], 1)[0][0].id == first
    # importing the same rows again stores nothing twice
    again = CliRunner().invoke(app, ["import-embeddings", str(out), "--encoder", "tiny", "--db", str(tmp_path / "db"),
                                     "--json"])
    assert len(json.loads(again.stdout)["duplicates"]) == 6


def test_a_plain_npy_with_a_csv_reports_missing_images_and_zero_vectors(clip_retrieval_output, tmp_path,
                                                                      tiny_encoder):
    out, names, vectors = clip_retrieval_output
    npy = tmp_path / "vectors.npy"
    rows = np.concatenate([vectors[:3], np.zeros((1, vectors.shape[1]), np.float32), vectors[3:4]])
    np.save(npy, rows)
    table = tmp_path / "table.csv"
    pd.DataFrame({"path": [f"images/{n}" for n in names[:3]] + [f"images/{names[3]}", "images/not-there.jpg"],
                  "tags": ["a, b"] * 5, "author": ["Ana"] * 5}).to_csv(table, index=False)
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    report = import_embeddings(store, read_embeddings(npy, table), "tiny")
    assert len(report.added) == 3
    reasons = {i.name: i.reason for i in report.skipped}
    assert "zero" in reasons[f"images/{names[3]}"] and "not-there.jpg" in " ".join(reasons)
    assert {r.author for r in store.records()} == {"Ana"} and all(r.tags == ("a", "b") for r in store.records())


def test_the_encoder_and_the_dimension_are_checked(clip_retrieval_output, tmp_path, tiny_db):
    out, _, _ = clip_retrieval_output
    store = ImageStore.open(tiny_db)
    table = read_embeddings(out)
    with pytest.raises(EncoderMismatch, match="built with encoder 'tiny'.*declared 'conse'"):
        import_embeddings(store, table, "conse")
    wide = read_embeddings(out)
    wide = type(wide)(wide.paths, wide.names, np.ones((len(wide.paths), 7), np.float32), wide.metadata, wide.layout)
    with pytest.raises(EncoderMismatch, match="dimension 7"):
        import_embeddings(store, wide, "tiny")
    with pytest.raises(BadRequestError, match="needs its table"):
        read_embeddings(tmp_path / "x.npy")
    with pytest.raises(BadRequestError, match="no img_emb"):
        read_embeddings(tmp_path)
    bad = CliRunner().invoke(app, ["import-embeddings", str(out), "--encoder", "clipish", "--db", str(tmp_path / "n")])
    assert bad.exit_code == 1 and "unknown encoder 'clipish'" in bad.output


def test_a_new_db_takes_only_the_named_encoders_width(clip_retrieval_output, tmp_path):
    """Defect 11: --encoder tiny with 48-d rows would make a DB where every text search fails."""
    npy = tmp_path / "wide.npy"
    np.save(npy, np.ones((2, 48), np.float32))
    pd.DataFrame({"path": ["a.jpg", "b.jpg"]}).to_csv(tmp_path / "rows.csv", index=False)
    bad = CliRunner().invoke(app, ["import-embeddings", str(npy), "--metadata", str(tmp_path / "rows.csv"),
                                   "--encoder", "tiny", "--db", str(tmp_path / "new")])
    assert bad.exit_code == 1 and "48-d, but tiny makes 32-d" in bad.output
    assert not (tmp_path / "new" / "meta.sqlite").exists()


def _npy_header(path, shape, dtype="<f4", data=b""):
    """A .npy whose header declares ``shape`` whatever data follows it."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})
        fh.write(data)


@pytest.mark.parametrize("case, match", [
    ("empty", "not a readable .npy"),
    ("no rows", "holds no embeddings"),
    ("declares 10^12 rows", "declares 1,000,000,000,000 x 512.*holds only 4,096 bytes"),
    ("objects", "expected \\(images, dim\\) floats"),
])
def test_a_damaged_npy_is_a_clear_error_before_any_allocation(tmp_path, case, match):
    """Defect 11: the header is checked against the file before memory is taken; no exit 2."""
    npy = tmp_path / "e.npy"
    if case == "empty":
        npy.write_bytes(b"")
    elif case == "no rows":
        np.save(npy, np.zeros((0, 32), np.float32))
    elif case == "objects":
        _npy_header(npy, (2, 2), "|O")
    else:
        _npy_header(npy, (10**12, 512), data=b"\0" * 4096)
    pd.DataFrame({"path": ["a.jpg"]}).to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(BadRequestError, match=match):
        read_embeddings(npy, tmp_path / "rows.csv")


def test_shards_of_mixed_widths_are_refused(clip_retrieval_output):
    """Defect 11: every shard of one export comes from one model."""
    out, _, _ = clip_retrieval_output
    np.save(out / "img_emb" / "img_emb_1.npy", np.ones((2, 16), np.float16))
    with pytest.raises(BadRequestError, match="img_emb_1.npy holds 16-d embeddings but the shards before it 32-d"):
        read_embeddings(out)


def test_embeddings_of_a_model_whose_weights_are_elsewhere_are_imported(tmp_path):
    """The point of importing: the model ran on a cluster. Its width comes from open_clip's config, and storing
    the rows loads no weights here."""
    photos = demo_files(1)[:2]
    vectors = np.random.default_rng(0).normal(size=(2, 512)).astype(np.float32)
    np.save(tmp_path / "emb.npy", vectors)
    pd.DataFrame({"path": [str(p) for p in photos]}).to_csv(tmp_path / "rows.csv", index=False)
    out = CliRunner().invoke(app, ["import-embeddings", str(tmp_path / "emb.npy"), "--metadata", str(tmp_path / "rows.csv"),
                                   "--encoder", "open_clip:ViT-B-32/laion2b_s34b_b79k", "--db", str(tmp_path / "db"),
                                   "--json"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.stdout)["added"]) == 2
