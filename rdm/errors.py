"""Every error a user can act on, in one place, under one base: ``RDMError``.

An ``RDMError``'s message says what failed, with which input, and what to do; front ends show it
as it is (the CLI with exit code 1, the dashboard in an error box). Any other exception is a bug:
the CLI prints its traceback and exits 2, the dashboard logs it under a short id.

Each class keeps the builtin base its callers relied on before this module existed (``except
ValueError`` around a plan, ``except LookupError`` around a run) as a second parent.
"""

from __future__ import annotations


class RDMError(Exception):
    """A failure the user can fix; the message names the input and the fix."""


# --- the DB and its inputs ---


class StoreError(RDMError, RuntimeError):
    """A DB operation failed; the message names the input and what to do."""


class EncoderMismatch(StoreError):
    """Vectors or queries from another encoder than the one that built the DB."""


class DiskFull(RDMError, OSError):
    """A file could not be written for want of space (or quota); what was being written is not kept."""


class BadImage(RDMError, ValueError):
    """One input file cannot become an image; the message is the per-file reason."""


class EncoderError(RDMError, RuntimeError):
    """An encoder could not be built or used; the message says what to do."""


# --- retrieval ---


class DecompositionError(RDMError, ValueError):
    """A request the decomposer cannot serve (empty prompt, unknown backend, missing model)."""


class PlanError(RDMError, ValueError):
    """A plan that cannot condition the prior (bad weights, empty, unknown item kind)."""


class RetrievalError(RDMError, ValueError):
    """A retrieval request that cannot be served; the message says what to change."""


class EvaluationError(RDMError, ValueError):
    """A labelled query file that cannot be evaluated."""


class CredentialsInUrl(RDMError, ValueError):
    """A server URL (LLM, GPU worker) given with user:password@ in it: the key/token variables carry secrets."""


# --- generation; ``kind`` and ``http_status`` carry these across the worker's HTTP API ---


class GenerationError(RDMError, RuntimeError):
    kind = "generation_failed"
    http_status = 500


class BadRequestError(GenerationError):
    kind = "bad_request"
    http_status = 422


class ProductError(BadRequestError, ValueError):
    """A product photo, mask or placement that cannot be used; the message says what to change."""


class MissingImageError(GenerationError):
    kind = "missing_image"
    http_status = 422


class WeightsMissing(EncoderError, GenerationError):
    """The weights of a model (an encoder, the decomposer's, Kandinsky's) are not on this machine; a worker
    answers it as HTTP 503 "weights_missing"."""

    kind = "weights_missing"
    http_status = 503


class WorkerUnreachableError(GenerationError):
    kind = "unreachable"
    http_status = 502


class WorkerAuthError(GenerationError):
    kind = "auth"
    http_status = 401


class RequestTooLargeError(GenerationError):
    kind = "too_large"
    http_status = 413


class OutOfGPUMemoryError(GenerationError):
    kind = "out_of_memory"
    http_status = 507


class GenerationTimeoutError(GenerationError):
    kind = "timeout"
    http_status = 504


class GenerationCancelledError(GenerationError):
    kind = "cancelled"
    http_status = 499


ERROR_KINDS: dict[str, type[GenerationError]] = {
    cls.kind: cls for cls in (GenerationError, BadRequestError, MissingImageError, WeightsMissing,
                              WorkerUnreachableError, WorkerAuthError, RequestTooLargeError,
                              OutOfGPUMemoryError, GenerationTimeoutError, GenerationCancelledError)
}




# --- runs ---


class RunError(RDMError, LookupError):
    """A run that cannot be found, read, or was written by an incompatible version."""
