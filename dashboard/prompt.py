"""The prompt box, with the seed's prompts A and B one click away. Every page's box shows the one
working prompt (dashboard/state.py): typed on one page, it is there on the next and after a reload."""

from __future__ import annotations

import streamlit as st

from dashboard import state

SEED_PROMPTS = {
    "Prompt A (collar)": (
        "This stylish dog collar combines navy fabric with beige leather details. Featuring a gold-tone "
        "buckle and a matching tag. The dog wearing the collar, sits on a cushion, gazing at its owner "
        "with loving eyes."),
    "Prompt B (hoodie)": (
        "A cute dog wearing yellow hoodie sits on a stylish sofa, gazing around in a warm and cozy living "
        "room. Soft lighting fills the space, casting gentle shadows on the plush cushions. The atmosphere "
        "feels calm and inviting, with a sense of comfort and warmth."),
}


def seed_prompt_picker(key: str, height: int = 100) -> str:
    """The prompt box with the seed's prompts A and B one click away; ``key`` namespaces the page."""
    box = f"{key}:prompt"
    choice = st.segmented_control("Seed prompts", list(SEED_PROMPTS), key=f"{key}:seed-choice")
    applied = f"{key}:seed-applied"
    if not choice:  # cleared, or the page was left: picking it again applies it again
        st.session_state.pop(applied, None)
    elif st.session_state.get(applied) != choice:
        st.session_state[box] = SEED_PROMPTS[choice]
        st.session_state[applied] = choice
    if box in st.session_state:  # typed or picked here: it becomes the working prompt
        state.set_working_prompt(st.session_state[box])
    else:  # arriving on the page (Streamlit dropped the box when the page was left)
        st.session_state[box] = state.working_prompt()
    return st.text_area("Prompt", key=box, height=height,
                        placeholder="Describe the ad image, or pick a seed prompt above")
