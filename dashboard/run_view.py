"""A run on screen: the side-by-side grid (one column per mode, one row per seed), its scores per
requirement and what conditioned each mode. Shared by Generate & compare and Runs & report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.grid import short
from rdm.runs import RunRecord


TEST_MODEL_BANNER = ("**TEST MODEL** – these images come from the tiny random-weight Kandinsky used for tests: "
                     "they are noise, not results. Set RDM_BACKEND=local or remote for real images.")


def score_table(record: RunRecord) -> pd.DataFrame:
    """Mean CLIP cosine per mode: the full prompt, then one row per requirement (sub-query)."""
    means = [m.mean_scores() for m in record.modes]
    rows = [{"requirement": "full prompt", **{m.mode: p for m, (p, _) in zip(record.modes, means)}}]
    rows += [{"requirement": req, **{m.mode: (r[i] if r else None) for m, (_, r) in zip(record.modes, means)}}
             for i, req in enumerate(record.requirements)]
    return pd.DataFrame(rows)


def render_run(record: RunRecord) -> None:
    """Test-model banner, scores per requirement, then one column per mode and one row per seed."""
    if record.test_model:
        st.warning(TEST_MODEL_BANNER, icon=":material/science:")
    s, g = record.settings, record.generator
    st.caption(f"Run `{record.id}` · {record.created} · seed {s.seed} · {s.steps} steps (prior {s.prior_steps}) · "
               f"guidance {s.guidance} · {s.size[0]}×{s.size[1]} · "
               f"{'tiny test model' if record.test_model else g.backend} on {g.gpu_name or g.device}"
               + (" · **test model**" if record.test_model else "")
               + (f" · variations of `{Path(record.variation_of).name}` at strength {s.strength:g}"
                  if record.variation_of else ""))
    if record.product:
        st.info(f"Product kept pixel-identical: `{Path(record.product.source or 'product').name}`, "
                f"{record.product.placement_text()}; only its surroundings were generated.", icon=":material/lock:")
    if record.scorer:
        st.markdown(f"**Requirement satisfaction** (mean cosine, scored with `{record.scorer}`)")
        table = score_table(record)
        modes = [m.mode for m in record.modes]
        styled = table.style.format("{:.3f}", subset=modes, na_rep="–")
        if len(modes) > 1:
            styled = styled.highlight_max(subset=modes, axis=1, color="#d7f0dd")
        st.dataframe(styled, hide_index=True, width="stretch")
        if len(modes) > 1:
            st.caption("Green: the best mode for each requirement.")
    cols = st.columns(len(record.modes))
    for col, mode in zip(cols, record.modes):
        prompt_mean, _ = mode.mean_scores()
        col.markdown(f"#### {mode.mode}")
        col.caption(f"{len(mode.plan.items)} plan items · {mode.seconds:.1f} s"
                    + (f" · prompt {prompt_mean:.3f}" if prompt_mean is not None else ""))
    for row in range(max(len(m.images) for m in record.modes)):
        cols = st.columns(len(record.modes))
        for col, mode in zip(cols, record.modes):
            if row >= len(mode.images):
                continue
            image = mode.images[row]
            with col.container(border=True):
                path = record.image_path(image)
                if path is not None and path.is_file():
                    st.image(str(path), width="stretch")
                else:
                    st.warning(f"{image.file} is missing from the run folder.")
                head = f"**seed {image.seed}**" + (" :orange-badge[test model]" if record.test_model else "")
                if image.prompt_score is not None:
                    head += f" · prompt `{image.prompt_score:.3f}`"
                details = " · ".join(f"{short(req)} `{v:.3f}`"
                                     for req, v in zip(record.requirements, image.requirement_scores))
                st.markdown(head + (f"  \n:gray[{details}]" if details else ""))
    with st.expander("What conditioned each mode (plan items and weights)"):
        for mode in record.modes:
            st.markdown(f"**{mode.mode}**" + (f" – {' '.join(mode.plan.notes)}" if mode.plan.notes else ""))
            st.dataframe(pd.DataFrame([{"source": i.source, "item": i.label(), "answers": i.subquery or "",
                                        "cosine": i.score, "weight": round(i.weight, 4)} for i in mode.plan.items]),
                         column_config={"cosine": st.column_config.NumberColumn(format="%.3f")},
                         hide_index=True, width="stretch")
