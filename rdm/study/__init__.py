"""Generation studies: prompts x modes x seeds, scored by judges of their own, with statistics.

``from rdm.study import ScoredImage, summarise`` is the public way to analyse scored images.
"""

__all__ = ["ScoredImage", "summarise"]


def __getattr__(name: str):
    # loaded on first use: the statistics pull in scipy and statsmodels, which a suite or a vote does not need
    if name in __all__:
        from rdm.study import summary

        return getattr(summary, name)
    raise AttributeError(f"module 'rdm.study' has no attribute {name!r}")
