"""Pre-registration: ``rdm study plan`` writes what a study will run and how it will be judged (the request, the
prompts, the primary comparison, the analysis) into ``DIR/plan.json`` before any image exists; ``rdm study run
DIR`` runs exactly that plan, and the study records "pre-registered at <time>, run unchanged" or what changed.

A checksum of the registered content is kept beside it, so an edit of plan.json after the fact shows too
(it guards against mistakes, not against someone determined to rewrite history).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdm import __version__
from rdm.errors import BadRequestError, RunError
from rdm.common.files import atomic_write
from rdm.study.stats import ALPHA, Primary, parse_primary
from rdm.study.summary import FIDELITY, REQUIREMENTS_SUFFIX, analysis_plan

if TYPE_CHECKING:
    from rdm.study.request import StudyRequest

PLAN_FILE = "plan.json"
PLAN_FORMAT = 1


@dataclass(frozen=True)
class StudyPlan:
    """What was registered, and when."""

    request: dict  # StudyRequest.to_dict()
    suite: tuple[dict, ...]  # the prompts themselves: a suite file edited later changes nothing
    primary: Primary | None
    alpha: float
    created: str  # UTC, ISO 8601
    rdm_version: str
    intact: bool = True  # the checksum still matches

    @property
    def content(self) -> dict:
        return registered(self.request, self.suite, self.primary, self.alpha)

    def check(self, request: StudyRequest, primary: Primary | None, alpha: float) -> dict:
        """``{"at", "changes"}``: what runs now against what was registered (an empty list: run unchanged)."""
        now = registered(request.to_dict(), [p.to_dict() for p in request.suite], primary, alpha)
        changes = [] if self.intact else [f"{PLAN_FILE} was edited after it was registered (its checksum no "
                                          "longer matches)"]
        changes += _differences(self.content, now)
        if self.rdm_version != __version__:
            changes.append(f"rdm {self.rdm_version} registered it, rdm {__version__} ran it")
        return {"at": self.created, "changes": changes}


def registered(request: dict, suite, primary: Primary | None, alpha: float) -> dict:
    return {"request": request, "suite": list(suite), "primary": str(primary) if primary else None,
            "analysis": analysis_plan(alpha)}


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Every leaf that differs, as ``path: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in dict.fromkeys([*old, *new])
                for d in _differences(old.get(key), new.get(key), f"{where}.{key}" if where else key)]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in _differences(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: {json.dumps(old)} -> {json.dumps(new)}"]


def _digest(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def check_primary(primary: Primary, request: StudyRequest) -> Primary:
    """A primary comparison the request can measure: two of its modes, and a metric of one of its scorers."""
    missing = [m for m in (primary.a, primary.b) if m not in request.modes]
    if missing:
        raise BadRequestError(f"--primary names the mode {missing[0]}, which the study does not run "
                              f"({', '.join(request.modes)})")
    base = primary.metric.removesuffix(REQUIREMENTS_SUFFIX)
    kinds = {s for spec in request.scorers for s in (spec, spec.split(":", 1)[0])}
    if base != FIDELITY and base not in kinds:
        raise BadRequestError(f"--primary names the metric {primary.metric}, which no scorer of the study measures: "
                              f"use one of {', '.join(sorted(kinds))} (optionally with {REQUIREMENTS_SUFFIX}) or "
                              f"{FIDELITY}")
    return primary


def write_plan(folder: str | Path, request: StudyRequest, primary: str | Primary | None = None,
               alpha: float = ALPHA) -> StudyPlan:
    """Register ``request`` in ``folder`` before any image exists (a plan not yet run may be replaced)."""
    folder = Path(folder)
    if (folder / "study.json").exists() or any((folder / "runs").glob("*")):
        raise RunError(f"{folder} already holds images: a plan is written before any image exists; choose a new "
                       "folder")
    if not 0 < alpha < 1:
        raise BadRequestError(f"--alpha must be between 0 and 1, got {alpha}")
    primary = check_primary(parse_primary(primary) if isinstance(primary, str) else primary, request) \
        if primary else None
    plan = StudyPlan(request.to_dict(), tuple(p.to_dict() for p in request.suite), primary, alpha,
                     datetime.now(timezone.utc).isoformat(timespec="seconds"), __version__)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / PLAN_FILE, json.dumps(
        {"format": PLAN_FORMAT, "created": plan.created, "rdm_version": plan.rdm_version, "plan": plan.content,
         "sha256": _digest(plan.content)}, indent=1, ensure_ascii=False).encode("utf-8"))
    return plan


def read_plan(folder: str | Path) -> StudyPlan:
    path = Path(folder) / PLAN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        content = data["plan"]
        return StudyPlan(content["request"], tuple(content["suite"]),
                         parse_primary(content["primary"]) if content["primary"] else None,
                         float(content["analysis"]["alpha"]), data["created"], data["rdm_version"],
                         data["sha256"] == _digest(content))
    except FileNotFoundError as exc:
        raise RunError(f"no plan at {folder}: write one with `rdm study plan SUITE --out {folder}`") from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{path} is not a study plan ({type(exc).__name__}: {exc}); write it again with "
                       "`rdm study plan`") from exc


def plan_request(plan: StudyPlan) -> StudyRequest:
    """The registered request, to run."""
    from rdm.study.request import StudyRequest
    from rdm.study.suite import SuitePrompt

    return StudyRequest.from_dict(plan.request, [SuitePrompt.from_dict(p) for p in plan.suite])


def registration_line(study: dict) -> str:
    """What a reader needs first: was the analysis fixed before the images existed?"""
    reg = study.get("preregistration")
    if not reg:
        return "not pre-registered: the comparisons were chosen with the study run (`rdm study plan` registers one)"
    if not reg["changes"]:
        return f"pre-registered at {reg['at']}, run unchanged"
    return f"pre-registered at {reg['at']}; changed since: " + "; ".join(reg["changes"])
