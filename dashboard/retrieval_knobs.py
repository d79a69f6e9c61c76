"""The retrieval knobs (decomposer, k, budget, thresholds, near-duplicates, covering set), one widget
set for every page that retrieves. They start from the session's shared settings and write back, so
what is tuned in the Retrieval inspector is what Generate & compare uses, and either page can change it."""

from __future__ import annotations

import streamlit as st

from dashboard import state
from rdm.decompose import BACKENDS as DECOMPOSERS
from rdm.retrieve import RETRIEVAL_KINDS, FilterSettings, Fusion, RetrievalSettings


def retrieval_knobs(key: str, encoder_name: str) -> RetrievalSettings:
    """The knobs under widget keys ``<key>:<knob>``; returns (and shares) the settings they make."""
    shared = state.retrieval_settings()
    f = shared.filters
    c0, c1, c2, c3, c4, c5, c6 = st.columns([0.9, 1.1, 0.7, 0.8, 1.4, 1.4, 1.2])
    kind = c0.selectbox("Retrieval", RETRIEVAL_KINDS, index=RETRIEVAL_KINDS.index(shared.fusion.kind),
                        key=f"{key}:fusion", help="image: the embedding's cosine; text: the curated caption, tags, "
                                                  f"category and file name; hybrid: {Fusion().describe()}")
    fusion = Fusion(kind, shared.fusion.text_weight)
    default_threshold = f.absolute_for(encoder_name, fusion)
    decomposer = c1.selectbox("Sub-queries from", DECOMPOSERS, index=DECOMPOSERS.index(shared.decomposer),
                              key=f"{key}:decomposer",
                              help="llm: the configured OpenAI-compatible server; offline: spaCy; keybert: keywords")
    k = c2.number_input("Top-k", 1, 12, shared.k, key=f"{key}:k", help="Hits per sub-query")
    budget = c3.number_input("Budget", 0, 50, shared.budget or 0, key=f"{key}:budget",
                             help="At most this many references in the final set (0: no cap)")
    # cosines of real matches are positive: the slider starts at 0 unless the encoder's default is below
    threshold = c4.slider("Absolute threshold (score)", min(0.0, default_threshold), 1.0, default_threshold, 0.01,
                          key=f"{key}:threshold:{encoder_name}:{kind}",
                          help=f"Hits scoring below this are filtered; the score is {fusion.describe()}. Default "
                               f"for {encoder_name}: {FilterSettings().absolute_for(encoder_name, fusion):.2f} "
                               "(absolute values do not transfer between encoders; a text match only adds)")
    relative = c5.slider("Relative threshold (× best hit)", 0.0, 1.0, f.relative, 0.05, key=f"{key}:relative",
                         help="Keep hits scoring at least this fraction of their sub-query's best hit")
    dedupe = c6.slider("Near-duplicate above", 0.80, 1.0, f.dedupe, 0.01, key=f"{key}:dedupe")
    t1, t2, _ = st.columns([1, 1, 2])
    coverage = t1.toggle("Choose a covering set", value=f.coverage_select, key=f"{key}:coverage",
                         help="As few references as cover every sub-query, instead of all survivors")
    drop = t2.toggle("Drop uncovered sub-queries", value=f.drop_uncovered, key=f"{key}:drop",
                     help="Sub-queries with no reference left leave the plan's text items")
    # the encoder's own default stays "the default" (None), as the CLI records it when --threshold is not given
    chosen = None if float(threshold) == FilterSettings().absolute_for(encoder_name, fusion) else float(threshold)
    settings = RetrievalSettings(k=int(k), budget=int(budget) or None, decomposer=decomposer, fusion=fusion,
                                 filters=FilterSettings(threshold=chosen, relative=float(relative),
                                                        dedupe=float(dedupe), drop_uncovered=drop,
                                                        coverage_select=coverage))
    state.set_retrieval_settings(settings)
    return settings


def describe(settings: RetrievalSettings) -> str:
    """The settings in force, in a line."""
    f = settings.filters
    return (f"**{settings.fusion.kind}** retrieval · sub-queries from **{settings.decomposer}** · "
            f"top-{settings.k} · budget "
            f"{settings.budget or 'none'} · absolute {f.threshold if f.threshold is not None else 'encoder default'} · "
            f"relative {f.relative:.2f} · near-duplicates above {f.dedupe:.2f}"
            + (" · covering set" if f.coverage_select else "") + (" · uncovered dropped" if f.drop_uncovered else ""))
