"""Serve the dashboard: ``python -m dashboard.serve [streamlit's --server.* options]`` (what `make run` and
`rdm dashboard` start; run it from the repository root).

Streamlit runs the app's script only when a browser connects, so a fresh server's first page paid for
importing every module the pages use (torch, pandas, plotly, open_clip, the rdm library: 5-6 s on a 2-core
machine, while the background warm-up competed for the interpreter). Here they are imported before the
server opens its port; everything else is ``streamlit run dashboard/app.py``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
ALSO_PRELOADED = ("open_clip",)  # imported by the encoder the warm-up loads (tiny's test model too)


def preload() -> list[str]:
    """Import the dashboard's modules and what they import; returns their names."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import streamlit.runtime.caching.cache_data_api  # noqa: F401 - sets its logger's level: adjusted below

    import dashboard

    names = [f"dashboard.{m.name}" for m in pkgutil.iter_modules(dashboard.__path__) if m.name not in ("app", "serve")]
    # their cached functions are declared before Streamlit's runtime exists: it says so once per function, harmless
    caching = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level = caching.level
    caching.setLevel(logging.ERROR)
    try:
        for name in [*names, *ALSO_PRELOADED]:
            importlib.import_module(name)
    finally:
        caching.setLevel(level)
    return names


def main() -> None:
    preload()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
