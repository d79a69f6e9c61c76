"""Blind review: two images of one prompt and seed from two modes, sides shuffled and modes hidden; vote
left, right, tie or both bad (keys ← → T B), overall and optionally per requirement. Each vote is saved
as it is cast."""

import streamlit as st

from dashboard.config import settings
from dashboard.feedback import page_header, run_safely
from dashboard.state import user_name
from dashboard.study_view import pick_study
from rdm.study.votes import VoteBook, next_pair

KEY = "review"
BUTTONS = (("left", "Left is better", "Left", ":material/arrow_back:"),
           ("right", "Right is better", "Right", ":material/arrow_forward:"),
           ("tie", "Tie", "T", ":material/drag_handle:"), ("both bad", "Both bad", "B", ":material/thumb_down:"))


def requirement_key(pair, n: int) -> str:
    return f"{KEY}:req:{pair.prompt_id}:{pair.seed}:{pair.left_mode}:{pair.right_mode}:{n}"  # fresh per pair


def vote(folder, study: dict, pair, choice: str) -> None:
    def work() -> None:
        book = VoteBook(folder)
        book.cast(user_name(), pair, choice, study=study)
        for n, requirement in enumerate(pair.requirements):
            picked = st.session_state.get(requirement_key(pair, n))
            if picked:
                book.cast(user_name(), pair, picked, requirement, study=study)
    run_safely("Saving the vote", work)


page_header("Blind review", "Which image shows the prompt better? The modes are hidden and the sides shuffled.")
picked = pick_study(settings().studies_dir, KEY)
reviewer = user_name()
if picked is not None and not reviewer:
    st.warning("Type **your name** in the sidebar first: votes are counted per reviewer.", icon=":material/badge:")
elif picked is not None:
    folder, study = picked
    pair, done, total = next_pair(study, VoteBook(folder), reviewer)
    st.progress(done / max(total, 1), text=f"{reviewer}: {done} of {total} pairs voted")
    if pair is None:
        st.success("You have voted on every pair of this study. The ranking is on the **Studies** page.",
                   icon=":material/task_alt:")
    else:
        st.markdown(f"**Prompt:** {pair.prompt}")
        left, right = st.columns(2)
        left.image(str(folder / pair.left_file), caption="Left", width="stretch")
        right.image(str(folder / pair.right_file), caption="Right", width="stretch")
        if pair.requirements:
            with st.expander("Vote per requirement too (optional)", icon=":material/checklist:"):
                for n, requirement in enumerate(pair.requirements):
                    st.segmented_control(requirement, ["left", "right", "tie", "both bad"],
                                         key=requirement_key(pair, n))
        row = st.container(horizontal=True, gap="small")
        for choice, label, key, icon in BUTTONS:
            row.button(label, key=f"{KEY}:{choice}", icon=icon, shortcut=key, on_click=vote,
                       args=(folder, study, pair, choice), help=f"Shortcut: {key}")
        st.caption("Keys: ← left · → right · T tie · B both bad")
