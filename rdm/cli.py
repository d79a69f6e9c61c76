"""The `rdm` command line. Each command parses flags, calls the library, prints; no logic here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from rdm.settings import load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="RDM Studio: reference-image DB, sub-query retrieval, Kandinsky 2.2 runs.")

DbOption = typer.Option(None, "--db", help="DB folder (default: env RDM_DB, else the demo DB).")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON only.")


def fail(message: str, code: int = 1) -> None:
    """Print an actionable error (no traceback) and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# --- DB commands (store, encoders) ---


# --- retrieval commands (decompose, retrieve, plan, evaluate) ---


# --- generation commands (generate, worker, runs) ---


def main() -> None:
    app()


if __name__ == "__main__":
    main()
