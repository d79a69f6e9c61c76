"""A prompt suite: one JSON object per line, ``{"id", "prompt", "products"?, "requirements"?, "tags"?}``.

``products`` are product photos (paths relative to the suite file, or absolute) that condition every
mode; ``requirements`` are what each image is judged against (else the decomposition's sub-queries).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rdm.errors import BadRequestError
from rdm.common.jsonl import json_objects

SUITES = Path(__file__).resolve().parents[2] / "data" / "suites"  # the bundled ones: dev/ and test/


@dataclass(frozen=True)
class SuitePrompt:
    id: str
    prompt: str
    products: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"id": self.id, "prompt": self.prompt, "products": list(self.products),
                "requirements": list(self.requirements), "tags": list(self.tags)}

    @classmethod
    def from_dict(cls, d: dict) -> "SuitePrompt":
        return cls(str(d["id"]), str(d["prompt"]),
                   *(tuple(d.get(k) or ()) for k in ("products", "requirements", "tags")))


def bundled_suites() -> list[str]:
    """``dev/seed``, ``dev/pets``, ``test/pets``, ...: names ``load_suite`` accepts."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in SUITES.glob("*/*.jsonl"))


def suite_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = SUITES / f"{name_or_path}.jsonl"
    if bundled.is_file():
        return bundled
    raise BadRequestError(f"no prompt suite at {name_or_path}: give a JSONL file, or one of "
                          f"{', '.join(bundled_suites())}")


def load_suite(name_or_path: str | Path) -> tuple[SuitePrompt, ...]:
    path = suite_path(name_or_path)
    prompts, seen = [], set()
    for where, row in json_objects(path.read_text(encoding="utf-8").splitlines(), path.name, BadRequestError):
        if not str(row.get("prompt", "")).strip():
            raise BadRequestError(f"{where} has no \"prompt\": each line needs one, e.g. "
                                  '{"id": "p1", "prompt": "a dog on a sofa"}')
        pid = str(row.get("id") or f"p{where.rsplit(':', 1)[1]}")  # else its line number
        if pid in seen:
            raise BadRequestError(f"{where}: the id {pid!r} is used twice; give every prompt its own id")
        seen.add(pid)
        products = tuple(str(_resolve(path, p, where)) for p in _strings(row, "products", where))
        prompts.append(SuitePrompt(pid, " ".join(str(row["prompt"]).split()), products,
                                   _strings(row, "requirements", where), _strings(row, "tags", where)))
    if not prompts:
        raise BadRequestError(f"the suite {path} has no prompts")
    return tuple(prompts)


def _strings(row: dict, key: str, where: str) -> tuple[str, ...]:
    value = row.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise BadRequestError(f"{where}: \"{key}\" must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _resolve(suite: Path, product: str, where: str) -> Path:
    path = Path(product) if Path(product).is_absolute() else suite.parent / product
    if not path.is_file():
        raise BadRequestError(f"{where}: the product photo {product} is not there (paths are relative to the suite)")
    return path
