"""Variations of the advertiser's photo: img2img from one product photo at several strengths and in several
modes, the same seeds everywhere, shown as a strength x mode grid; each strength is saved as a run. The
background worker makes them."""

from dataclasses import replace

import streamlit as st

from dashboard import state
from dashboard.config import settings
from dashboard.feedback import guard, page_header, show_check
from dashboard.jobs_view import adopt, follow, followed, queue_generation, report_end
from dashboard.prompt import seed_prompt_picker
from dashboard.resources import backend_status, require_store
from dashboard.run_view import TEST_MODEL_BANNER
from rdm.generate import BACKENDS, GenerationSettings
from rdm.retrieve import MODES
from rdm.runs import RunRequest
from rdm.runs import load_run
from rdm.generate.tiny import TEST_MODEL_SETTINGS
from rdm.ingest import save_input_photo

KEY = "variations"
STRENGTHS = (0.2, 0.35, 0.5, 0.65, 0.8)
RUNS = f"{KEY}:kept:runs"  # (strength, run) of the latest grid, kept across pages
JOB = f"{KEY}:kept:jobs"  # the jobs making them

s = settings()
page_header("Variations of a product photo", "img2img from the advertiser's own photo: a low strength stays close "
                                             "to it, a high one moves towards the prompt and the references.")
require_store(s)  # no DB: a message with the fix, and the page stops
adopt(s, JOB, "variations")  # after a reload, variations still being made are followed again
prompt = seed_prompt_picker(KEY, height=90)
photo = st.file_uploader("The product photo", type=["jpg", "jpeg", "png", "webp"], key=f"{KEY}:photo")
path = None
if photo is not None:
    with guard(f"Reading {photo.name}"):
        path = save_input_photo(s.runs_dir / "inputs", photo.name, photo.getvalue())
        st.image(str(path), caption=photo.name, width=200)
c1, c2 = st.columns(2)
strengths = c1.pills("Strengths", list(STRENGTHS), selection_mode="multi", default=[0.2, 0.35, 0.5],
                     key=f"{KEY}:strengths", help="How far img2img may move away from the photo (0-1]")
modes = c2.pills("Modes", list(MODES), selection_mode="multi", default=["none", "subquery+filter"],
                 key=f"{KEY}:modes", help="The same seeds in every mode and at every strength")
names = list(BACKENDS)
c3, c4, c5 = st.columns(3)
backend = c3.selectbox("Backend", names, index=names.index(s.backend) if s.backend in names else 0,
                       key=f"{KEY}:backend")
base = TEST_MODEL_SETTINGS if backend == "tiny" else GenerationSettings()
seed = c4.number_input("Seed", 0, 2**31 - 1, base.seed, key=f"{KEY}:seed")
# img2img runs steps x strength denoising steps: the tiny model's 4 would run none at strength 0.2
steps = c5.number_input("Decoder steps", 1, 150, max(base.steps, 10), key=f"{KEY}:steps:{backend}",
                        help="img2img runs steps × strength of them")
with guard("Checking the backend"):
    check = backend_status(s, backend)
    if not check.ok:
        show_check(check)
edited = state.edited_decomposition(prompt)  # the inspector's table of this prompt, as Generate uses it
if edited is not None:
    st.caption("Sub-queries: " + ", ".join(f"{q.text} **{q.weight:.2f}**" for q in edited.subqueries)
               + " (as edited in the Retrieval inspector)")
ready = bool(prompt.strip() and path and strengths and modes)
if st.button("Make the variations" if not followed(JOB) else "Queue more variations", type="primary",
             icon=":material/auto_awesome_motion:", disabled=not ready):
    with guard("Queueing the variations"):
        requests = [RunRequest(prompt, tuple(modes), variation_of=str(path), backend=backend,
                               retrieval=state.retrieval_settings(), decomposition=edited,
                               settings=replace(base, seed=int(seed), steps=int(steps), strength=float(strength)))
                    for strength in sorted(strengths)]
        queue_generation(s, f"variations at {', '.join(map(str, sorted(strengths)))}", requests, JOB, "variations")
        st.rerun()  # the page again, following the new job


def finished(job) -> None:
    runs = [load_run(s.runs_dir, run_id) for run_id in job.result]
    st.session_state[RUNS] = [(run.settings.strength, run) for run in runs]
    report_end(job, "Variations")


follow(s, JOB, finished)  # made by the background worker: a reload or another page does not stop it

made = st.session_state.get(RUNS) or []
if made:
    st.subheader("Strength × mode", divider="gray")
    if any(run.test_model for _, run in made):
        st.warning(TEST_MODEL_BANNER, icon=":material/science:")
    grid_modes = [m.mode for m in made[0][1].modes]
    head = st.columns([1] + [3] * len(grid_modes))
    for col, mode in zip(head[1:], grid_modes):
        col.markdown(f"**{mode}**")
    for strength, run in made:
        row = st.columns([1] + [3] * len(grid_modes))
        row[0].markdown(f"**strength {strength}**  \n:gray[run `{run.id}`]")
        for col, mode in zip(row[1:], run.modes):
            image = mode.images[0]
            picture = run.image_path(image)
            if picture is not None and picture.is_file():
                col.image(str(picture), width="stretch",
                          caption=f"seed {image.seed}" + (f" · prompt {image.prompt_score:.3f}"
                                                          if image.prompt_score is not None else ""))
    st.caption("Each strength is saved as its own run: open them on **Runs & report**.")
