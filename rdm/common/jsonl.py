"""JSON Lines input (query sets, prompt suites): one object per line, each bad line named in the error."""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from rdm.errors import RDMError


def json_objects(lines: Iterable[str], name: str, error: type[RDMError]) -> Iterator[tuple[str, dict]]:
    """``(where, object)`` for every non-blank line, ``where`` being ``NAME:LINE``; a line that is not a
    JSON object raises ``error`` saying which line and why."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{n}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not valid JSON ({exc.msg}); write one JSON object per line") from exc
        if not isinstance(data, dict):
            raise error(f"{where}: not a JSON object; write one {{...}} per line")
        yield where, data
