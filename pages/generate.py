"""Generate & compare: modes or the seed's presets side by side with the same seed, the advertiser's
product photos with their weights, an optional product kept pixel-identical, and every setting; the
page builds one run request, and the run is saved with its scores."""

import streamlit as st

from dashboard import state
from dashboard.config import settings
from dashboard.feedback import guard, page_header, show_check
from dashboard.jobs_view import adopt, follow, followed, queue_generation, report_end
from dashboard.prompt import seed_prompt_picker
from dashboard.resources import backend_status, require_store
from dashboard.retrieval_knobs import describe, retrieval_knobs
from dashboard.run_view import render_run
from rdm.generate import BACKENDS, GenerationSettings
from rdm.retrieve import MODES, PRESETS, RECIPES
from rdm.generate.product import ProductLock, ProductPlacement, load_product, place_product, save_product_upload
from rdm.runs import RunRequest
from rdm.runs import load_run
from rdm.generate.tiny import TEST_MODEL_SETTINGS
from rdm.ingest import save_input_photo

KEY = "generate"
JOB = f"{KEY}:kept:jobs"  # the generation jobs this session follows
SIZES = ["512×512", "768×768", "1024×1024", "768×512", "512×768", "128×128", "64×64"]
IMAGES_PER_MODE = 2  # two seeds per column: seed-to-seed variation shows beside the modes' differences


def product_photos(s) -> tuple[list[str], list[float] | None]:
    """Uploaded product photos saved beside the runs, and their weights (None: each preset's own)."""
    files = st.file_uploader("Product photos (input images)", type=["jpg", "jpeg", "png", "webp"],
                             accept_multiple_files=True, key=f"{KEY}:photos",
                             help="The advertiser's own photos; each conditions the prior with a fixed weight")
    paths: list[str] = []
    for f in files or []:
        with guard(f"Reading {f.name}"):
            paths.append(str(save_input_photo(s.runs_dir / "inputs", f.name, f.getvalue())))
    if not paths:
        return [], None
    preset = st.toggle("Use each mode's default weights (exp1/exp2: 0.2, 0.3; others: 0.4)", value=True,
                       key=f"{KEY}:default-weights")
    if preset:
        return paths, None
    defaults = RECIPES["exp2"].input_weights
    cols = st.columns(min(len(paths), 4))
    weights = [cols[n % len(cols)].number_input(f"Weight of photo {n + 1}", 0.01, 0.9,
                                                defaults[min(n, len(defaults) - 1)], 0.05, key=f"{KEY}:weight:{n}")
               for n in range(len(paths))]
    return paths, weights


def product_lock_section(s, size: tuple[int, int]) -> tuple[bool, ProductLock | None]:
    """Optional: a product kept pixel-identical; the model generates only around it. Previewed on the canvas.
    Returns (a product was uploaded, its lock; None while it cannot be used)."""
    with st.expander("Keep a product pixel-identical", icon=":material/lock:",
                     expanded=st.session_state.get(f"{KEY}:lock-photo") is not None):
        st.caption("Upload the product as a PNG with a transparent background (or a photo plus a mask, white = "
                   "product). It is placed on the image as is; Kandinsky's inpainting decoder generates everything "
                   "around it, and the product's own pixels are pasted back unchanged.")
        c1, c2 = st.columns(2)
        photo = c1.file_uploader("Product (PNG with transparency)", type=["png", "webp", "jpg", "jpeg"],
                                 key=f"{KEY}:lock-photo")
        mask = c2.file_uploader("Mask (optional, white = product)", type=["png", "jpg", "jpeg", "webp"],
                                key=f"{KEY}:lock-mask")
        if photo is None:
            return False, None
        d = ProductPlacement()
        c3, c4, c5 = st.columns(3)
        scale = c3.slider("Scale (share of the shorter side)", 0.05, 1.0, d.scale, 0.05, key=f"{KEY}:lock-scale")
        x = c4.slider("Centre x", 0.0, 1.0, d.x, 0.01, key=f"{KEY}:lock-x")
        y = c5.slider("Centre y", 0.0, 1.0, d.y, 0.01, key=f"{KEY}:lock-y")
        with guard("Placing the product"):
            folder = s.runs_dir / "inputs"
            photo_path = save_product_upload(folder, photo.name, photo.getvalue())
            mask_path = save_product_upload(folder, mask.name, mask.getvalue(), "product mask") if mask else None
            lock = load_product(photo_path, mask_path, ProductPlacement(scale, x, y))
            placed = place_product(lock, size)
            st.image(placed.canvas, width=220,
                     caption=f"Placement on the {size[0]}×{size[1]} canvas (grey: generated around the product)")
            return True, lock
    return True, None


def refill(request: RunRequest) -> None:
    """The form as the followed job asked for it (its product photos and lock are not re-uploaded)."""
    g, size = request.settings, "×".join(map(str, request.settings.size))
    state.set_working_prompt(request.prompt)
    state.set_retrieval_settings(request.retrieval)
    st.session_state.update({
        f"{KEY}:prompt": request.prompt, f"{KEY}:modes": list(request.modes), f"{KEY}:backend": request.backend,
        f"{KEY}:seed": g.seed, f"{KEY}:n": g.n_images, f"{KEY}:guidance": g.guidance,
        f"{KEY}:negative": g.negative_prompt,
        f"{KEY}:steps:{request.backend}": g.steps, f"{KEY}:prior-steps:{request.backend}": g.prior_steps,
        **({f"{KEY}:size:{request.backend}": size} if size in SIZES else {})})


s = settings()
page_header("Generate & compare", "Each mode conditions Kandinsky 2.2 differently; all run with the same seed, "
                                  "so the columns differ only by their conditioning.")
store = require_store(s)
adopted = adopt(s, JOB, "generation")  # after a reload, a run still generating is followed again
if adopted is not None:
    refill(RunRequest.from_dict(adopted.payload["requests"][0]))
prompt = seed_prompt_picker(KEY)

# 1. what to compare
modes = st.pills("Modes and presets", list(MODES) + list(PRESETS), selection_mode="multi",
                 default=list(MODES), key=f"{KEY}:modes",
                 help="none: the prompt alone · full: whole-prompt retrieval · subquery: top-k per sub-query · "
                      "subquery+filter: after the cosine filter · exp1-exp4: the seed's four experiments")
for preset in [m for m in modes if m in PRESETS]:
    st.caption(RECIPES[preset].note)
edited = state.edited_decomposition(prompt)
use_edited = False
if edited is not None and prompt.strip():
    use_edited = st.toggle("Use the sub-queries edited in the Retrieval inspector", value=True,
                           key=f"{KEY}:use-edited")

# 2. inputs and settings; the tiny test model starts from a few steps at a small size
with st.container(border=True):
    photos, weights = product_photos(s)
    backend_names = list(BACKENDS)
    c1, c2, c3, c4 = st.columns(4)
    backend = c1.selectbox("Backend", backend_names, index=backend_names.index(s.backend)
                           if s.backend in backend_names else 0, key=f"{KEY}:backend",
                           help="local: this machine's GPU · remote: the GPU worker at RDM_WORKER_URL · "
                                "tiny: random-weight test model")
    d = TEST_MODEL_SETTINGS if backend == "tiny" else GenerationSettings()
    seed = c2.number_input("Seed", 0, 2**31 - 1, d.seed, key=f"{KEY}:seed", help="Image k of each mode uses seed + k")
    n_images = c3.number_input("Images per mode", 1, 8, IMAGES_PER_MODE, key=f"{KEY}:n")
    size = c4.selectbox("Size (width×height)", SIZES, index=SIZES.index("×".join(map(str, d.size))),
                        key=f"{KEY}:size:{backend}")
    c5, c6, c7, c8 = st.columns(4)
    steps = c5.number_input("Decoder steps", 1, 150, d.steps, key=f"{KEY}:steps:{backend}")
    prior_steps = c6.number_input("Prior steps", 2, 100, d.prior_steps, key=f"{KEY}:prior-steps:{backend}")
    guidance = c7.number_input("Guidance", 0.0, 20.0, d.guidance, 0.5, key=f"{KEY}:guidance")
    negative = c8.text_input("Negative prompt", d.negative_prompt, key=f"{KEY}:negative",
                             placeholder="e.g. blurry, watermark, text")
    in_force = st.empty()
    with st.expander("Change the retrieval settings", icon=":material/tune:"):
        knobs = retrieval_knobs(KEY, store.encoder_name)
    in_force.caption(f"Retrieval settings in force (shared with the Retrieval inspector): {describe(knobs)}"
                     + (" · the inspector's edited sub-queries" if use_edited else ""))
    width, height = (int(v) for v in size.split("×"))
    wants_lock, product = product_lock_section(s, (width, height))
with guard("Checking the backend"):
    check = backend_status(s, backend)
    if not check.ok:  # say before the click what would go wrong, and how to fix it
        show_check(check)

# 3. generate: queued for the background worker, followed here step by step
# an unusable product disables the button rather than silently generating without the lock
waiting = len(followed(JOB))
go = st.button("Generate" if not waiting else "Queue another run", type="primary", icon=":material/auto_awesome:",
               disabled=not (prompt.strip() and modes) or (wants_lock and product is None),
               help="Runs wait in the job queue and run one after another; each shows here when done" if waiting
               else None)
if go:
    with guard("Queueing the run"):
        request = RunRequest(
            prompt=prompt, modes=tuple(modes), input_images=tuple(photos),
            input_weights=tuple(weights) if weights is not None else None, product=product,
            settings=GenerationSettings(seed=int(seed), n_images=int(n_images), steps=int(steps),
                                        prior_steps=int(prior_steps), guidance=float(guidance),
                                        size=(width, height), negative_prompt=negative),
            retrieval=knobs,
            decomposition=edited if use_edited else None, backend=backend)
        queue_generation(s, f"{len(request.modes)} mode(s): {prompt[:50]}", [request], JOB)
        st.rerun()  # the page again, following the new job


def finished(job) -> None:
    """A followed job has ended: its run becomes this session's result, or its error is shown."""
    if job.status == "done" and job.result:
        state.set_last_run(load_run(s.runs_dir, job.result[0]))
    report_end(job, "Generation")


# 3b. the run generates in the background worker: a reload or another page does not stop it
follow(s, JOB, finished)

# 4. the result of the latest run in this session
run = state.last_run()
if run is not None:
    st.subheader("Result", divider="gray")
    fallback = next((m.retrieval.decomposition.fallback_reason for m in run.modes
                     if m.retrieval and m.retrieval.decomposition and m.retrieval.decomposition.fallback_reason), None)
    if fallback:
        st.warning(f"The LLM was not used: {fallback}. Offline sub-queries instead.")
    st.success(f"Saved as run `{run.id}` in `{run.folder}`. Open it on **Runs & report** for the HTML report "
               "and the zip.", icon=":material/save:")
    render_run(run)
