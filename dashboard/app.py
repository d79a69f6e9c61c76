"""RDM Studio: the dashboard's entry point (`streamlit run dashboard/app.py`, or `make run`).

One page per file in `pages/`; the pages call the `rdm` library and render its results.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import PAGES, state  # noqa: E402
from dashboard.chart_preload import preload_charts  # noqa: E402
from dashboard.config import settings, settings_summary  # noqa: E402
from dashboard.grid import GRID_CSS  # noqa: E402
from dashboard.resources import warm_up  # noqa: E402

st.set_page_config(page_title="RDM Studio", page_icon=":material/photo_library:", layout="wide")

navigation = st.navigation({
    "Reference DB": [
        st.Page(PAGES / "overview.py", title="Overview", icon=":material/space_dashboard:", default=True),
        st.Page(PAGES / "browse.py", title="Browse & curate", icon=":material/photo_library:"),
        st.Page(PAGES / "embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
    ],
    "Generation": [
        st.Page(PAGES / "retrieval.py", title="Retrieval inspector", icon=":material/manage_search:"),
        st.Page(PAGES / "retrieval_eval.py", title="Retrieval evaluation", icon=":material/leaderboard:"),
        st.Page(PAGES / "generate.py", title="Generate & compare", icon=":material/auto_awesome:"),
        st.Page(PAGES / "variations.py", title="Variations", icon=":material/auto_awesome_motion:"),
        st.Page(PAGES / "runs.py", title="Runs & report", icon=":material/history:"),
        st.Page(PAGES / "queue.py", title="Queue", icon=":material/queue:"),
    ],
    "Evaluation": [
        st.Page(PAGES / "studies.py", title="Studies", icon=":material/science:"),
        st.Page(PAGES / "blind_review.py", title="Blind review", icon=":material/how_to_vote:"),
    ],
})

s = settings()
state.begin_session(s.jobs_dir / "sessions", s.user)
with st.sidebar:
    st.markdown("### RDM Studio")
    if not st.get_option("server.address"):  # unset: Streamlit listens on every interface
        st.warning("This dashboard listens on every network interface. Start it with `rdm dashboard` or "
                   "`make run` to keep it on 127.0.0.1.", icon=":material/lan:")
    st.caption("Retrieval-augmented ad images: curate the reference DB, inspect retrieval, "
               "generate side by side.")
    st.text_input("Your name", key=state.USER_NAME, placeholder="recorded with your changes and votes",
                  on_change=state.remember_user_name,
                  help="Every curation change is kept in the DB's history (Browse & curate → History) with this "
                       "name, and every blind-review vote; a reload keeps it")
    with st.expander("Configuration", icon=":material/settings:"):
        for name, value in settings_summary(s).items():
            st.markdown(f"**{name}**: `{value}`")
        st.caption("Set with RDM_* environment variables or .streamlit/secrets.toml; secrets are never shown.")
    preload_charts()  # Plotly, while the person reads: the first chart opened need not wait for it

st.html(GRID_CSS)
warm_up(s)  # the encoder for the first search, the groups Review opens with, UMAP if the map will fit here
navigation.run()
