"""RDM Studio: retrieval-augmented ad-image generation (library; never imports Streamlit)."""

__version__ = "0.1.0"
