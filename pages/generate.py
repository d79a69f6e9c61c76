"""Generate & compare: modes or the seed's presets side by side with the same seed, the advertiser's
product photos with their weights, an optional product kept pixel-identical, and every setting; the
run is saved with its scores."""

from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from dashboard import widgets as w
from rdm.decompose import BACKENDS as DECOMPOSERS
from rdm.generate import BACKENDS, GenerationSettings
from rdm.product import ProductLock, ProductPlacement, load_product, place_product, save_product_upload
from rdm.retrieve import MODES, PRESETS, RECIPES, plan_for
from rdm.runs import db_provenance, generate_run
from rdm.uploads import save_input_photo

KEY = "generate"
LAST_RUN = f"{KEY}:last-run"
SIZES = ["512×512", "768×768", "1024×1024", "768×512", "512×768", "128×128", "64×64"]


def product_photos(s) -> tuple[list[str], list[float] | None]:
    """Uploaded product photos saved beside the runs, and their weights (None: each preset's own)."""
    files = st.file_uploader("Product photos (input images)", type=["jpg", "jpeg", "png", "webp"],
                             accept_multiple_files=True, key=f"{KEY}:photos",
                             help="The advertiser's own photos; each conditions the prior with a fixed weight")
    paths: list[str] = []
    for f in files or []:
        with w.guard(f"Reading {f.name}"):
            paths.append(str(save_input_photo(s.runs_dir / "inputs", f.name, f.getvalue())))
    if not paths:
        return [], None
    preset = st.toggle("Use each mode's default weights (exp1/exp2: 0.2, 0.3; others: 0.4)", value=True,
                       key=f"{KEY}:default-weights")
    if preset:
        return paths, None
    cols = st.columns(min(len(paths), 4))
    weights = [cols[n % len(cols)].number_input(f"Weight of photo {n + 1}", 0.01, 0.9, 0.3 if n else 0.2, 0.05,
                                                key=f"{KEY}:weight:{n}") for n in range(len(paths))]
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
        with w.guard("Placing the product"):
            folder = s.runs_dir / "inputs"
            photo_path = save_product_upload(folder, photo.name, photo.getvalue())
            mask_path = save_product_upload(folder, mask.name, mask.getvalue(), "product mask") if mask else None
            lock = load_product(photo_path, mask_path, ProductPlacement(scale, x, y))
            placed = place_product(lock, size)
            st.image(placed.canvas, width=220,
                     caption=f"Placement on the {size[0]}×{size[1]} canvas (grey: generated around the product)")
            return True, lock
    return True, None


@contextmanager
def failing_marks(status) -> Iterator[None]:
    """A failure turns the progress box red; the error itself is shown by the guard around it."""
    try:
        yield
    except Exception:
        status.update(label="Generation failed", state="error", expanded=False)
        raise


s = w.settings()
w.page_header("Generate & compare", "Each mode conditions Kandinsky 2.2 differently; all run with the same seed, "
                                    "so the columns differ only by their conditioning.")
store = w.require_store(s)
prompt = w.seed_prompt_picker(KEY)

# 1. what to compare
modes = st.pills("Modes and presets", list(MODES) + list(PRESETS), selection_mode="multi",
                 default=list(MODES), key=f"{KEY}:modes",
                 help="none: the prompt alone · full: whole-prompt retrieval · subquery: top-k per sub-query · "
                      "subquery+filter: after the cosine filter · exp1-exp4: the seed's four experiments")
for preset in [m for m in modes if m in PRESETS]:
    st.caption(RECIPES[preset].note)
edited = st.session_state.get("retrieval:decomposition")
use_edited = False
if edited is not None and prompt.strip() and " ".join(prompt.split()) == edited.prompt:
    use_edited = st.toggle("Use the sub-queries edited in the Retrieval inspector", value=True,
                           key=f"{KEY}:use-edited")

# 2. inputs and settings
with st.container(border=True):
    photos, weights = product_photos(s)
    backend_names = list(BACKENDS)
    c1, c2, c3, c4 = st.columns(4)
    backend = c1.selectbox("Backend", backend_names, index=backend_names.index(s.backend)
                           if s.backend in backend_names else 0, key=f"{KEY}:backend",
                           help="local: this machine's GPU · remote: the GPU worker at RDM_WORKER_URL · "
                                "tiny: random-weight test model")
    tiny = backend == "tiny"
    seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key=f"{KEY}:seed", help="Image k of each mode uses seed + k")
    n_images = c3.number_input("Images per mode", 1, 8, 2, key=f"{KEY}:n")
    size = c4.selectbox("Size (width×height)", SIZES, index=SIZES.index("128×128" if tiny else "768×768"),
                        key=f"{KEY}:size:{backend}")
    c5, c6, c7, c8 = st.columns(4)
    steps = c5.number_input("Decoder steps", 1, 150, 4 if tiny else 50, key=f"{KEY}:steps:{backend}")
    prior_steps = c6.number_input("Prior steps", 2, 100, 2 if tiny else 25, key=f"{KEY}:prior-steps:{backend}")
    guidance = c7.number_input("Guidance", 0.0, 20.0, 4.0, 0.5, key=f"{KEY}:guidance")
    k = c8.number_input("References per query (k)", 1, 12, 5, key=f"{KEY}:k")
    c9, c10 = st.columns([1, 3])
    decomposer = c9.selectbox("Sub-queries from", DECOMPOSERS, index=DECOMPOSERS.index("offline"),
                              key=f"{KEY}:decomposer", disabled=use_edited)
    negative = c10.text_input("Negative prompt", key=f"{KEY}:negative", placeholder="e.g. blurry, watermark, text")
    width, height = (int(v) for v in size.split("×"))
    wants_lock, product = product_lock_section(s, (width, height))
with w.guard("Checking the backend"):
    check = w.backend_status(s, backend)
    if not check.ok:  # say before the click what would go wrong, and how to fix it
        w.show_check(check)

# 3. generate, with progress
# an unusable product disables the button rather than silently generating without the lock
go = st.button("Generate", type="primary", icon=":material/auto_awesome:",
               disabled=not (prompt.strip() and modes) or (wants_lock and product is None))
if go:
    with w.guard("Generating"):
        settings = GenerationSettings(seed=int(seed), n_images=int(n_images), steps=int(steps),
                                      prior_steps=int(prior_steps), guidance=float(guidance), size=(width, height),
                                      negative_prompt=negative)
        with st.status("Retrieving references…", expanded=True) as status, failing_marks(status):
            w.encoder(store)
            retrievals = [plan_for(store, prompt, m, input_images=photos, input_weights=weights, k=int(k),
                                   decomposer_backend=decomposer, llm=w.llm_config(s),
                                   decomposition=edited if use_edited and RECIPES[m].decomposer is None else None)
                          for m in modes]
            fallback = next((r.decomposition.fallback_reason for r in retrievals
                             if r.decomposition and r.decomposition.fallback_reason), None)
            if fallback:
                st.warning(f"The LLM was not used: {fallback}. Offline sub-queries instead.")
            status.update(label=f"Loading the {backend} generator…")
            generator = w.generator(s, backend)
            bar = st.progress(0.0)
            order = {m: i for i, m in enumerate(modes)}

            def progress(mode: str, stage: str, step: int, total: int) -> None:
                share = {"prior": 0.3, "decoder": 0.7}.get(stage, 1.0)
                start = 0.3 if stage == "decoder" else 0.0
                done = (order.get(mode, 0) + start + share * step / max(total, 1)) / len(modes)
                bar.progress(min(done, 1.0), text=f"{mode}: {stage} step {step}/{total}")

            status.update(label=f"Generating {len(modes)} mode(s) × {int(n_images)} image(s)…")
            run = generate_run(generator, retrievals, settings=settings, runs_dir=s.runs_dir,
                               open_image=store.open_image, scorer=store.encoder, db=db_provenance(store),
                               product=product, progress=progress,
                               options={"k": int(k), "decomposer": "edited" if use_edited else decomposer,
                                        "backend": backend, "input_weights": weights})
            status.update(label=f"Saved run {run.id}", state="complete", expanded=False)
        st.session_state[LAST_RUN] = run

# 4. the result of the latest run in this session
run = st.session_state.get(LAST_RUN)
if run is not None:
    st.subheader("Result", divider="gray")
    st.success(f"Saved as run `{run.id}` in `{run.folder}`. Open it on **Runs & report** for the HTML report "
               "and the zip.", icon=":material/save:")
    w.render_run(run)
