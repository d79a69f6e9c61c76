"""Generation studies: prompts x modes x seeds, scored by judges of their own, with statistics.

``from rdm.study import ScoredImage, summarise`` is the public way to analyse scored images. Modules: ``suite``
(prompt suites), ``request`` (a study as plain data), ``plan`` (pre-registration), ``run`` (each prompt's runs
through ``rdm.runs.run_request``, scored), ``scorers``, ``summary`` and ``stats`` (figures with the prompt as the
unit), ``power`` (the planner), ``votes``, ``report`` and ``export``. May import ``rdm.runs`` and every stage below.
"""

__all__ = ["ScoredImage", "summarise"]


def __getattr__(name: str):
    # loaded on first use: the statistics pull in scipy and statsmodels, which a suite or a vote does not need
    if name in __all__:
        from rdm.study import summary

        return getattr(summary, name)
    raise AttributeError(f"module 'rdm.study' has no attribute {name!r}")
