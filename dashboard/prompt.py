"""The prompt box, with the seed's prompts A and B one click away."""

from __future__ import annotations

import streamlit as st

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
    choice = st.segmented_control("Seed prompts", list(SEED_PROMPTS), key=f"{key}:seed-choice")
    if choice and st.session_state.get(f"{key}:seed-applied") != choice:
        st.session_state[f"{key}:prompt"] = SEED_PROMPTS[choice]
        st.session_state[f"{key}:seed-applied"] = choice
    return st.text_area("Prompt", key=f"{key}:prompt", height=height,
                        placeholder="Describe the ad image, or pick a seed prompt above")
