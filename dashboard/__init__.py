"""RDM Studio's Streamlit dashboard: `streamlit run dashboard/app.py` (or `make run`)."""

from pathlib import Path

PAGES = Path(__file__).resolve().parents[1] / "pages"  # the user's layout keeps pages/ at the top level
