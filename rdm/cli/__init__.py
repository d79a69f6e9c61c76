"""The `rdm` command line. Each command parses flags, calls the library, prints; no logic here.

``rdm.cli.app`` holds the app and the one error handler; the commands live in ``db``,
``retrieval``, ``generation`` and ``study`` and register themselves on import.
"""

from rdm.cli import db, generation, retrieval, study  # noqa: F401 - registers the commands
from rdm.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
