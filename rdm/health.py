"""Is each outside dependency usable? Plain-words checks for the generation backend and the LLM.

Each check returns a ``Check`` whose detail says what to do when something is missing. None
of them loads a model: they look for weights on disk, ask the worker's ``/health``, and list the
LLM server's models, each with a short timeout so a status page stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rdm.decompose import LLMConfig
from rdm.common.redact import public_url, redact
from rdm.settings import Settings

Level = Literal["ok", "warning", "error"]
WEIGHTS_HINT = "run with internet once, or set HF_HOME / point RDM_PRIOR_ID and RDM_DECODER_ID to local folders"


@dataclass(frozen=True)
class Check:
    level: Level
    title: str  # a few words: "GPU worker reachable"
    detail: str  # what was found, and the fix when it is not ok

    @property
    def ok(self) -> bool:
        return self.level == "ok"


def weights_present(model_id: str) -> bool:
    """A local folder with ``model_index.json``, or a Hugging Face id already in the local cache."""
    local = Path(model_id).expanduser()
    if local.exists() or model_id.startswith(("/", ".", "~")):
        return (local / "model_index.json").is_file()
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "model_index.json"), str)


def backend_check(settings: Settings, backend: str | None = None, *, timeout_s: float = 3.0) -> Check:
    """Can ``backend`` (default: the configured one) generate images right now?"""
    backend = backend or settings.backend
    if backend == "tiny":
        return Check("warning", "Tiny test model",
                     "RDM_BACKEND=tiny: a random-weight Kandinsky that runs on any CPU. Its images are "
                     "noise and are labelled as test-model output. Set RDM_BACKEND=local (GPU here) or "
                     "remote (GPU worker) for real images.")
    if backend == "remote":
        return _remote_check(settings, timeout_s)
    if backend == "local":
        return _local_check(settings)
    return Check("error", f"Unknown backend {backend!r}", "Set RDM_BACKEND to local, remote or tiny.")


def _local_check(settings: Settings) -> Check:
    import torch

    missing = [m for m in (settings.prior_id, settings.decoder_id) if not weights_present(m)]
    if missing:
        return Check("error", "Kandinsky 2.2 weights missing",
                     f"weights for {', '.join(missing)} not found: {WEIGHTS_HINT}. Or generate on a GPU "
                     "machine: RDM_BACKEND=remote with RDM_WORKER_URL pointing at `rdm worker`.")
    if not torch.cuda.is_available():
        return Check("warning", "No GPU on this machine",
                     "The weights are here but there is no CUDA GPU: one 768x768 image takes over an hour "
                     "on a CPU. Run `rdm worker` on a GPU machine and set RDM_BACKEND=remote and "
                     "RDM_WORKER_URL.")
    return Check("ok", "Local GPU ready", f"{torch.cuda.get_device_name(0)}; prior {settings.prior_id}, "
                                          f"decoder {settings.decoder_id}")


def _remote_check(settings: Settings, timeout_s: float) -> Check:
    """Every GPU worker RDM_WORKER_URL lists must answer."""
    from rdm.errors import CredentialsInUrl
    from rdm.generate import GenerationError, RemoteGenerator

    if not settings.worker_urls:
        return Check("error", "No GPU worker configured",
                     "RDM_BACKEND=remote needs RDM_WORKER_URL (e.g. http://gpu-box:8765), where "
                     "`rdm worker --host 0.0.0.0` runs.")
    lines = []
    for url in settings.worker_urls:
        try:
            health = RemoteGenerator(url, settings.worker_token, timeout=timeout_s,
                                     connect_timeout=timeout_s).health(refresh=True)
        except (GenerationError, CredentialsInUrl) as exc:
            return Check("error", "GPU worker not reachable", redact(exc))
        info = health.get("info") or {}
        gpu = info.get("gpu_name") or info.get("device") or "unknown device"
        test = " (TEST MODEL: random weights)" if info.get("test_model") else ""
        lines.append(f"{public_url(url)}: {gpu}{test}; prior {info.get('prior_id')}, decoder "
                     f"{info.get('decoder_id')}; {health.get('queue', 0)} job(s) queued")
    title = "GPU worker reachable" if len(lines) == 1 else f"{len(lines)} GPU workers reachable"
    return Check("ok", title, "; ".join(lines))


def llm_check(config: LLMConfig, *, timeout_s: float = 3.0) -> Check:
    """Is an LLM configured, and does its server answer? (lists models: free, unlike a completion)"""
    import openai

    if not config.configured:
        return Check("warning", "No LLM configured",
                     "Sub-queries come from the offline decomposer (spaCy). For LLM sub-queries set "
                     "RDM_LLM_BASE_URL to an OpenAI-compatible server (e.g. http://localhost:11434/v1 "
                     "for Ollama) or RDM_LLM_API_KEY for OpenAI, in the environment or "
                     ".streamlit/secrets.toml.")
    client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key or "not-needed",
                           timeout=timeout_s, max_retries=0)
    try:
        with client:
            models = [m.id for m in client.models.list()]
    except openai.AuthenticationError as exc:
        return Check("error", "LLM refused the API key",
                     f"{config.where} answered HTTP {exc.status_code}: check RDM_LLM_API_KEY.")
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        return Check("error", "LLM not reachable",
                     f"cannot reach {config.where} ({type(exc).__name__}): start the server or fix "
                     "RDM_LLM_BASE_URL. Until then the offline decomposer stands in.")
    except openai.APIStatusError as exc:
        # Some OpenAI-compatible servers have no model list; answering at all means it is up.
        return Check("ok", "LLM server answers",
                     f"{config.where} is up (no model list: HTTP {exc.status_code}); model {config.model}")
    listed = "" if not models or config.model in models else f" (not among the {len(models)} models it lists)"
    return Check("ok", "LLM reachable", f"{config.where}, model {config.model}{listed}")
