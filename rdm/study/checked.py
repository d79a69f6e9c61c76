"""A study folder's ``study.json`` read as data that may be damaged or hostile (a study handed on, a file
edited by hand): every value the CLI, the page and the report use is type-checked and bounded, and the figures
are computed again from the images, so a file's figures cannot disagree with its images nor carry markup or
sizes of their own. Anything that does not check is "damaged study <path>: <what>", never a traceback."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

from rdm.common.bounds import check_list, check_text
from rdm.errors import RunError
from rdm.study.stats import ALPHA, Primary
from rdm.study.summary import ScoredImage, summarise

MAX_COUNT = 10_000  # seeds, images per seed, candidates: far past any study, far short of a huge page
MAX_TEXT = 10_000  # characters of one stored text (a prompt, a note, a name)
MAX_ITEMS = 1_000_000  # entries of one list (images of a study)


class Damaged(Exception):
    """One value of the file is not what it must be; the message says which."""


def checked_study(raw: Any, path: Path) -> dict:
    """``raw`` (parsed JSON) as a study the front ends can trust, or a ``RunError`` naming what is damaged."""
    try:
        return _checked(raw)
    except Damaged as exc:
        raise RunError(f"damaged study {path}: {exc}; it may have been edited by hand: run the study again "
                       "or restore the file") from exc


def _checked(raw: Any) -> dict:
    study = _mapping(raw, "the file")
    request = _mapping(study.get("request"), "request")
    modes = _texts(request.get("modes"), "request.modes")
    checked_request = {
        **request, "modes": modes,
        **{key: _count(request.get(key), f"request.{key}") for key in ("seeds", "n", "candidates")},
        "scorers": _texts(request.get("scorers"), "request.scorers"),
        "backend": _text(request.get("backend"), "request.backend"),
        "variation_strength": _optional(request.get("variation_strength"), _number, "request.variation_strength")}
    suite = [{**entry, "id": _text(entry.get("id"), "suite[].id"), "prompt": _text(entry.get("prompt"), "suite[].prompt")}
             for entry in (_mapping(p, "suite[]") for p in _list(study.get("suite"), "suite"))]
    requirements = {_text(k, "requirements"): _texts(v, f"requirements[{k!r}]")
                    for k, v in _mapping(study.get("requirements"), "requirements").items()}
    try:
        images = [ScoredImage.from_dict(_mapping(i, "images[]")) for i in _list(study.get("images"), "images")]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise Damaged(f"an image entry is not a scored image ({type(exc).__name__}: {exc})") from exc
    if any(i.mode not in modes for i in images):
        raise Damaged("an image names a mode the request does not list")
    analysis = study.get("analysis") if isinstance(study.get("analysis"), Mapping) else {}
    alpha = _number(analysis.get("alpha", ALPHA), "analysis.alpha")
    if not 0 < alpha < 1:
        raise Damaged(f"analysis.alpha is {alpha}, not a level between 0 and 1")
    primary = analysis.get("primary")
    primary = (Primary(*(_text(_mapping(primary, "analysis.primary").get(k), f"analysis.primary.{k}")
                         for k in ("a", "b", "metric"))) if primary is not None else None)
    registration = study.get("preregistration")
    if registration:
        registration = _mapping(registration, "preregistration")
        registration = {**registration, "at": _text(registration.get("at"), "preregistration.at"),
                        "changes": _texts(registration.get("changes"), "preregistration.changes")}
    return {**study, "id": _text(study.get("id"), "id"), "created": _text(study.get("created"), "created"),
            "request": checked_request, "suite": suite, "requirements": requirements,
            "scorers": _texts(study.get("scorers"), "scorers"), "test_model": bool(study.get("test_model")),
            "preregistration": registration, "runs": _mapping(study.get("runs", {}), "runs"),
            **summarise(images, modes, requirements, primary, alpha)}


def _mapping(value: Any, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise Damaged(f"{what} is {type(value).__name__}, not an object")
    return value


def _list(value: Any, what: str) -> list:
    return check_list(value, what, MAX_ITEMS, error=Damaged)


def _text(value: Any, what: str) -> str:
    return check_text(value, what, MAX_TEXT, error=Damaged)


def _texts(value: Any, what: str) -> list[str]:
    return [_text(v, f"{what}[]") for v in _list(value, what)]


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise Damaged(f"{what} is {value!r}, not a whole number from 1 to {MAX_COUNT:,}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Damaged(f"{what} is {value!r}, not a finite number")
    return float(value)


def _optional(value: Any, check: Callable[[Any, str], Any], what: str) -> Any:
    return None if value is None else check(value, what)
