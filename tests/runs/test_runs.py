"""Run folders: images + run.json + PNG provenance, listing, HTML export and zip download."""

import base64
import io
import json
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from rdm.generate import GenerationSettings
from rdm.plan import ConditioningPlan, PlanItem, prompt_only_plan
from rdm.generate.product import ProductPlacement, load_product, place_product
from rdm.decompose import Decomposition, SubQuery
from rdm.runs import (RUN_FORMAT, DbProvenance, RetrievalRecord, RunError, export_html, generate_run, list_runs, load_run,
                      read_png_provenance, requirements_of, zip_run)

SETTINGS = GenerationSettings(seed=7, n_images=2, steps=2, prior_steps=2, size=(64, 64))
PROMPT = "A cute dog wearing yellow hoodie sits on a stylish sofa"
SUBQUERIES = ["A cute dog wearing a yellow hoodie", "A stylish sofa"]
DB = DbProvenance(path="data/demo-db", index_version=4, encoder="tiny")


@pytest.fixture()
def product(tmp_path):
    path = tmp_path / "collar.png"
    Image.new("RGB", (90, 70), (20, 40, 130)).save(path)
    return path


def subquery_plan(product):
    return ConditioningPlan(prompt=PROMPT, mode="subquery+filter", items=(
        PlanItem(kind="text", weight=0.3, source="summary", text="dog in yellow hoodie on a sofa"),
        PlanItem(kind="text", weight=0.2, source="subquery", text=SUBQUERIES[0]),
        PlanItem(kind="text", weight=0.1, source="subquery", text=SUBQUERIES[1]),
        PlanItem(kind="image", weight=0.2, source="reference", image_id=11, subquery=SUBQUERIES[0], score=0.412),
        PlanItem(kind="image", weight=0.2, source="input", path=str(product))))


def db_image(image_id):
    return Image.new("RGB", (120, 100), (image_id * 20 % 255, 180, 60))


@pytest.fixture()
def comparison(tmp_path, generator, tiny_encoder, product):
    plans = [ConditioningPlan(prompt=PROMPT, mode="none", items=prompt_only_plan(PROMPT).items),
             subquery_plan(product)]
    return generate_run(generator, plans, settings=SETTINGS, runs_dir=tmp_path / "runs", open_image=db_image,
                        scorer=tiny_encoder, db=DB, requirements=SUBQUERIES, options={"k": 5})


def test_comparison_run_holds_every_mode_with_the_same_seed(comparison):
    run = load_run(comparison.folder.parent, comparison.id)
    assert run.comparison and [m.mode for m in run.modes] == ["none", "subquery+filter"]
    assert [[i.seed for i in m.images] for m in run.modes] == [[7, 8], [7, 8]]
    assert all(p.is_file() for p in run.image_paths()) and len(run.image_paths()) == 4
    data = json.loads((run.folder / "run.json").read_text())
    assert data["test_model"] is True and data["db"]["index_version"] == 4 and data["scorer"] == "tiny"
    assert data["modes"][1]["plan"]["items"][3]["image_id"] == 11
    assert {"generation_s", "scoring_s"} <= set(data["timings"])


def test_every_image_is_scored_against_the_prompt_and_each_requirement(comparison):
    for mode in comparison.modes:
        for image in mode.images:
            assert -1.0 <= image.prompt_score <= 1.0
            assert len(image.requirement_scores) == len(SUBQUERIES)
    prompt_mean, per_requirement = comparison.modes[0].mean_scores()
    assert prompt_mean is not None and len(per_requirement) == 2


def test_png_chunks_carry_parameters_and_provenance(comparison):
    mode = comparison.modes[1]
    parameters, rdm = read_png_provenance(comparison.folder / mode.images[1].file)
    first, settings_line = parameters.split("\n")
    assert first == PROMPT
    fields = dict(f.split(": ", 1) for f in re.split(r", (?=[A-Z][A-Za-z ]+: )", settings_line))
    assert fields["Seed"] == "8" and fields["Steps"] == "2" and fields["Size"] == "64x64"
    assert fields["RDM mode"] == "subquery+filter" and "random weights" in fields["Test model"]
    assert rdm["seed"] == 8 and rdm["reference_ids"] == [11] and rdm["test_model"] is True
    assert rdm["db"]["index_version"] == 4 and rdm["model"]["prior_id"].endswith("prior")
    assert rdm["scores"]["requirements"][SUBQUERIES[0]] == mode.images[1].requirement_scores[0]
    assert [i["source"] for i in rdm["plan"]["items"]] == ["summary", "subquery", "subquery", "reference", "input"]


def test_non_latin_prompt_survives_the_png_round_trip(tmp_path, generator):
    prompt = "네이비 원단 강아지 목걸이, gold buckle"
    run = generate_run(generator, [prompt_only_plan(prompt)], settings=GenerationSettings(steps=1, prior_steps=2,
                       size=(64, 64)), runs_dir=tmp_path)
    parameters, rdm = read_png_provenance(run.image_paths()[0])
    assert parameters.startswith(prompt + "\n") and rdm["prompt"] == prompt
    assert run.modes[0].images[0].prompt_score is None  # no scorer given: no made-up score


def test_runs_are_listed_newest_first_and_found_by_prefix(tmp_path, generator):
    quick = GenerationSettings(steps=1, prior_steps=2, size=(64, 64))
    first = generate_run(generator, [prompt_only_plan("first")], settings=quick, runs_dir=tmp_path)
    second = generate_run(generator, [prompt_only_plan("second")], settings=quick, runs_dir=tmp_path)
    (tmp_path / ".half-written.partial").mkdir()
    listed = list_runs(tmp_path)
    assert {r.id for r in listed} == {first.id, second.id}
    assert listed[0].created >= listed[1].created
    # The shortest prefix of the second id that the first does not share finds it alone.
    unique = next(second.id[:n] for n in range(1, len(second.id) + 1) if not first.id.startswith(second.id[:n]))
    assert load_run(tmp_path, unique).id == second.id
    with pytest.raises(RunError, match="several runs match"):
        load_run(tmp_path, first.id[:8])  # the date both share
    with pytest.raises(RunError, match="rdm runs list"):
        load_run(tmp_path, "no-such-run")
    assert list_runs(tmp_path / "missing") == []


def test_html_export_is_self_contained_with_every_image(comparison, tmp_path):
    out = tmp_path / "report.html"
    page = export_html(comparison, out)
    assert out.read_text(encoding="utf-8") == page
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 4
    on_disk = {p.read_bytes() for p in comparison.image_paths()}
    assert {base64.b64decode(e) for e in embedded} == on_disk
    assert "src=\"http" not in page and PROMPT in page
    assert all(q in page for q in SUBQUERIES) and "cos 0.412" in page
    assert page.count('class="thumb"') == 2  # the DB reference and the product photo
    assert "TEST MODEL" in page
    # no path of this machine: the tiny model's local weight folders are named, not located
    assert comparison.generator.prior_id.startswith("/") and comparison.generator.prior_id not in page
    assert "(local folder)" in page and "<title>" + PROMPT[:20] in page


def test_a_variation_report_says_its_photo_and_strength(comparison):
    from dataclasses import replace

    variation = replace(comparison, variation_of="/home/ads/inputs/collar.png",
                        settings=replace(comparison.settings, strength=0.35))
    page = export_html(variation)
    assert "<b>Variations</b> of the photo collar.png at strength 0.35" in page and "/home/ads" not in page


def test_zip_holds_run_json_images_and_thumbnails(comparison):
    with zipfile.ZipFile(io.BytesIO(zip_run(comparison))) as archive:
        names = set(archive.namelist())
    assert f"{comparison.id}/run.json" in names
    assert {f"{comparison.id}/{p.relative_to(comparison.folder).as_posix()}" for p in comparison.image_paths()} <= names
    assert sum(n.startswith(f"{comparison.id}/refs/") for n in names) == 2


def test_requirements_come_from_the_sub_query_decomposition():
    def found(backend, *subqueries):
        return RetrievalRecord(decomposition=Decomposition(prompt="p", summary="s", backend=backend,
                                                           subqueries=tuple(SubQuery(t, w) for t, w in subqueries)))

    keybert = found("keybert", ("collar", 1.0))
    offline = found("offline", ("a dog", 0.6), ("a sofa", 0.4))
    assert requirements_of([None, keybert, offline]) == ("a dog", "a sofa")
    assert requirements_of([keybert]) == ("collar",)
    assert requirements_of([None, RetrievalRecord(decomposition=None)]) == ()


def transparent_product(path, size=(32, 24)):
    """A product PNG with a transparent border and a textured opaque body."""
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[2:-2, 2:-2] = (180, 60, 20, 255)
    rgba[2:-2, 2:-2, 1] = np.arange(size[0] - 4, dtype=np.uint8) * 9
    Image.fromarray(rgba, "RGBA").save(path)
    return path, rgba


def test_a_product_lock_is_recorded_in_run_json_png_and_report(tmp_path, generator, product):
    path, rgba = transparent_product(tmp_path / "collar-cutout.png")
    lock = load_product(path, placement=ProductPlacement(scale=28 / 64, x=0.5, y=0.5))  # 28 px wide: as is
    run = generate_run(generator, [subquery_plan(product)], settings=SETTINGS, runs_dir=tmp_path / "runs",
                       open_image=db_image, product=lock)
    data = json.loads((run.folder / "run.json").read_text())
    assert data["product"]["pixel_identical"] is True and data["product"]["source"] == str(path)
    assert data["product"]["placement"] == {"scale": 28 / 64, "x": 0.5, "y": 0.5}
    assert data["product"]["sha256"] == lock.sha256() and load_run(run.folder.parent, run.id).product.to_dict() == data["product"]
    parameters, rdm = read_png_provenance(run.image_paths()[0])
    assert 'Product lock: "pixel-identical, scale 0.4375 at (0.5, 0.5)"' in parameters and rdm["product"] == data["product"]
    assert rdm["model"]["inpaint_decoder_id"].endswith("inpaint")
    # the saved PNGs (with their provenance chunks) still hold the product's own pixels
    left, top, right, bottom = place_product(lock, SETTINGS.size).box
    for file in run.image_paths():
        saved = np.asarray(Image.open(file).convert("RGB"))
        assert np.array_equal(saved[top:bottom, left:right], rgba[2:-2, 2:-2, :3])
    page = export_html(run)
    assert "Product kept pixel-identical" in page and "collar-cutout.png" in page and "scale 0.4375 at (0.5, 0.5)" in page


# --- the CLI: rdm generate --compare, rdm runs list/show/export ---


def test_cli_compare_makes_one_run_with_every_mode(tiny_db, tmp_path, product, monkeypatch):
    from typer.testing import CliRunner

    from rdm.cli import app
    from rdm.retrieve import MODES

    monkeypatch.setenv("RDM_WORKER_TOKEN", "tok-do-not-store")
    monkeypatch.setenv("RDM_LLM_API_KEY", "sk-do-not-store")
    runs = tmp_path / "runs"
    cli = CliRunner()
    result = cli.invoke(app, ["generate", PROMPT, "--compare", "--backend", "tiny", "--steps", "2", "--prior-steps",
                              "2", "--n", "1", "--size", "64", "--seed", "5", "--input-image", str(product),
                              "--db", str(tiny_db), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    (folder,) = runs.iterdir()
    data = json.loads((folder / "run.json").read_text())
    assert [m["mode"] for m in data["modes"]] == list(MODES)
    assert {i["seed"] for m in data["modes"] for i in m["images"]} == {5}
    assert data["test_model"] is True and data["db"]["encoder"] == "tiny" and data["requirements"]
    stored = (folder / "run.json").read_text() + "".join(
        str(read_png_provenance(p)) for p in (folder / "images").glob("*.png"))
    assert "do-not-store" not in stored

    listed = cli.invoke(app, ["runs", "list", "--runs-dir", str(runs)])
    assert folder.name in listed.output and "TEST MODEL" in listed.output
    shown = cli.invoke(app, ["runs", "show", folder.name, "--runs-dir", str(runs)])
    assert all(f"[{mode}]" in shown.output for mode in MODES)
    page, archive = tmp_path / "report.html", tmp_path / "run.zip"
    exported = cli.invoke(app, ["runs", "export", folder.name, "--html", str(page), "--zip", str(archive),
                                "--runs-dir", str(runs)])
    assert exported.exit_code == 0, exported.output
    assert page.read_text().count("data:image/png;base64,") == len(MODES)
    assert zipfile.is_zipfile(archive)


def test_cli_generates_around_a_product_and_explains_a_bad_one(tiny_db, tmp_path):
    from typer.testing import CliRunner

    from rdm.cli import app

    path, rgba = transparent_product(tmp_path / "collar.png")
    runs = tmp_path / "runs"
    base = ["generate", PROMPT, "--mode", "none", "--backend", "tiny", "--steps", "2", "--prior-steps", "2", "--n",
            "2", "--size", "64", "--db", str(tiny_db), "--runs-dir", str(runs)]
    result = CliRunner().invoke(app, base + ["--product", str(path), "--product-scale", "0.4375", "--product-x",
                                             "0.3", "--product-y", "0.7"])
    assert result.exit_code == 0, result.output
    assert "product kept pixel-identical" in result.output
    (folder,) = runs.iterdir()
    data = json.loads((folder / "run.json").read_text())
    assert data["product"]["placement"] == {"scale": 0.4375, "x": 0.3, "y": 0.7}
    for file in (folder / "images").glob("*.png"):
        saved = np.asarray(Image.open(file).convert("RGB"))
        assert np.array_equal(saved[35:55, 5:33], rgba[2:-2, 2:-2, :3])  # 28x20 centred at (19.2, 44.8)
    opaque = tmp_path / "opaque.png"
    Image.new("RGB", (30, 20), "red").save(opaque)
    refused = CliRunner().invoke(app, base + ["--product", str(opaque)])
    assert refused.exit_code == 1 and "no transparent background: upload a PNG with transparency" in refused.output
    off = CliRunner().invoke(app, base + ["--product", str(path), "--product-x", "0.95"])
    assert off.exit_code == 1 and "sticks out of the 64x64 canvas" in off.output
    assert len(list(runs.iterdir())) == 1


def test_cli_refuses_several_modes_without_compare(tiny_db, tmp_path):
    from typer.testing import CliRunner

    from rdm.cli import app

    result = CliRunner().invoke(app, ["generate", PROMPT, "--mode", "none", "--preset", "exp4", "--backend", "tiny",
                                      "--db", str(tiny_db), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "--compare" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_run_from_an_incompatible_version_says_so_and_older_runs_still_open(comparison):
    path = comparison.folder / "run.json"
    data = json.loads(path.read_text())
    assert data["format"] == RUN_FORMAT
    path.write_text(json.dumps({**data, "format": 99}))
    with pytest.raises(RunError, match="run format 99 .*reads formats 1, 2"):
        load_run(comparison.folder.parent, comparison.id)
    with pytest.warns(UserWarning, match="run format 99"):
        assert list_runs(comparison.folder.parent) == []  # skipped with a warning, not a crash
    del data["format"]  # runs written before the format was recorded
    path.write_text(json.dumps(data))
    reopened = load_run(comparison.folder.parent, comparison.id)
    assert reopened.db == DB and reopened.modes[1].retrieval is None and reopened.options == {"k": 5}


def test_a_tampered_run_folder_cannot_pull_files_into_the_report(comparison, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    path = comparison.folder / "run.json"
    data = json.loads(path.read_text())
    data["modes"][0]["images"][0]["file"] = "../../secret.txt"
    data["modes"][1]["images"][0]["file"] = str(secret)  # an absolute path
    data["thumbnails"] = {k: "/etc/hostname" for k in data["thumbnails"]}
    data["prompt"] = "<script>alert(1)</script>"
    data["generator"]["gpu_name"] = "<img src=x onerror=alert(2)>"
    path.write_text(json.dumps(data))
    tampered = load_run(comparison.folder.parent, comparison.id)
    page = export_html(tampered)
    encoded_secret = base64.b64encode(b"TOP-SECRET-CONTENT").decode()
    assert encoded_secret not in page and "TOP-SECRET-CONTENT" not in page
    assert "<script>" not in page and "<img src=x" not in page
    assert page.count("picture missing from the run folder") >= 2
    assert all(p.is_relative_to(comparison.folder.resolve()) for p in tampered.image_paths())


def test_bad_settings_in_a_tampered_run_are_a_damaged_run_not_markup(comparison):
    path = comparison.folder / "run.json"
    data = json.loads(path.read_text())
    data["settings"]["guidance"] = "<b>4</b>"
    path.write_text(json.dumps(data))
    with pytest.raises(RunError, match="damaged.*guidance must be a number"):
        load_run(comparison.folder.parent, comparison.id)


@pytest.mark.parametrize("run_id", ["/etc", "../elsewhere/x", "..", ".hidden", "a/b", "C:\\\\x", ""])
def test_a_run_id_is_a_name_not_a_path(tmp_path, run_id):
    elsewhere = tmp_path / "elsewhere" / "x"
    elsewhere.mkdir(parents=True)
    (elsewhere / "run.json").write_text("{}")
    with pytest.raises(RunError, match="not a run id"):
        load_run(tmp_path / "runs", run_id)


def test_a_common_a1111_reader_parses_the_pngs(comparison):
    from sd_parsers import ParserManager

    mode = comparison.modes[1]
    info = ParserManager().parse(str(comparison.folder / mode.images[1].file))
    assert info is not None, "sd-parsers rejected the PNG"
    (sampler,) = info.samplers
    assert sampler.name == "DDPM" and sampler.parameters["seed"] == "8"
    assert sampler.prompts[0].value == PROMPT and sampler.model.name.endswith("decoder")


def test_settings_diff_names_only_what_differs():
    from dataclasses import replace

    from rdm.generate.settings import GeneratorInfo
    from rdm.runs import RunRecord
    from rdm.runs.compare import settings_diff

    tiny = GeneratorInfo(backend="tiny", prior_id="p", decoder_id="d", device="cpu", dtype="float32", test_model=True)
    base = RunRecord(id="a", created="2026-12-01T00:00:00", prompt="a dog", requirements=("dog",), modes=(),
                     settings=GenerationSettings(), generator=tiny,
                     options={"k": 5, "filters": {"relative": 0.8}, "modes": ["full"]})
    other = replace(base, id="b", settings=replace(base.settings, steps=30),
                    options={"k": 5, "filters": {"relative": 0.6}, "modes": ["full"]})
    diffs = {d.name: d.values for d in settings_diff([base, other])}
    assert diffs == {"settings.steps": (str(GenerationSettings().steps), "30"), "options.filters.relative": ("0.8", "0.6")}
    assert settings_diff([base, base]) == []


@pytest.mark.parametrize("where, value", [
    ("seed", "<script>alert(1)</script>"),
    ("seconds", "<b>1</b>"),
    ("prompt_score", "0.5<script>"),
    ("mode", ["<script>"]),
    ("requirements", ["<script>"] * 100_000),
    ("score", "<i>0.9</i>"),
])
def test_a_tampered_value_is_a_damaged_run_not_markup(comparison, where, value):
    """Defect 4 (runs): a run.json value of the wrong type or size is 'damaged run: <what>', exit 1, never a page
    with raw markup or a crash."""
    path = comparison.folder / "run.json"
    data = json.loads(path.read_text())
    mode = data["modes"][1]
    if where in ("seed", "prompt_score"):
        mode["images"][0][where] = value
    elif where in ("seconds", "mode"):
        mode[where] = value
    elif where == "score":
        next(i for i in mode["plan"]["items"] if i["kind"] == "image")["score"] = value
    else:
        data[where] = value
    path.write_text(json.dumps(data))
    with pytest.raises(RunError, match="^damaged run: "):
        load_run(comparison.folder.parent, comparison.id)
    from typer.testing import CliRunner

    from rdm.cli import app

    out = CliRunner().invoke(app, ["runs", "export", comparison.id, "--html", str(comparison.folder / "r.html"),
                                   "--runs-dir", str(comparison.folder.parent)])
    assert out.exit_code == 1 and "damaged run: " in out.output and "<script>" not in out.output.split("damaged")[0]
