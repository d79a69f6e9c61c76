"""The `rdm` app, its shared options and printers, and the one place where errors are handled.

An ``RDMError`` is the user's to fix: its message is printed as one line and the exit code is 1.
Anything else is a bug: the full traceback goes to stderr and the exit code is 2.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from rdm.errors import RDMError
from rdm.common.redact import redact
from rdm.settings import load_settings

BUG_EXIT = 2


class Commands(TyperGroup):
    """Every command runs inside this group's ``invoke``: errors are turned into messages here only."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own ways to stop (usage errors included): it prints them itself
        except RDMError as exc:
            typer.echo(f"error: {redact(exc)}", err=True)
            raise typer.Exit(1) from None
        except Exception:  # noqa: BLE001 - anything else is a bug: show it whole, secrets aside
            sys.stderr.write(redact(traceback.format_exc()))
            typer.echo("internal error: this is a bug in RDM Studio, not in your input; the traceback above "
                       "says where", err=True)
            raise typer.Exit(BUG_EXIT) from None


app = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="RDM Studio: reference-image DB, sub-query retrieval, Kandinsky 2.2 runs.")

DbOption = typer.Option(None, "--db", help="DB folder (default: env RDM_DB, else the demo DB).")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON only.")
RetrievalOption = typer.Option("hybrid", "--retrieval", help="image (embedding cosine) | text (caption, tags, "
                               "category, file name) | hybrid (cosine + weighted text match).")
RunsDirOption = typer.Option(None, "--runs-dir", help="Run folders (default: env RDM_RUNS, else runs/).")


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def open_store(db: Optional[Path], encoder: Optional[str] = None):
    """The DB named by --db, env RDM_DB, or the demo DB."""
    from rdm.db import ImageStore
    from rdm.encoders import load_encoder

    return ImageStore.open(load_settings(db=db).db, load_encoder(encoder) if encoder else None)


class Progress:
    """A stderr progress bar, so `--json` output on stdout stays clean."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = typer.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def print_hits(hits, as_json: bool) -> None:
    if as_json:
        print_json({"hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        typer.echo("no hits")
    for h in hits:
        typer.echo(f"{h.id:>6}  {h.score:6.3f}  {h.record.category:<12} {h.record.filename}  {h.record.caption}"
                   f"  [{h.explain()}]")


def fusion_of(kind: str):
    """The ``--retrieval`` option as the library's ``Fusion`` (its checks, its default weight)."""
    from rdm.retrieve import Fusion

    return Fusion(kind)


def print_plan(plan) -> None:
    typer.echo(f"plan ({plan.mode}), weights sum to 1:")
    for item in plan.items:
        score = "" if item.score is None else f"  (score {item.score:.3f})"
        typer.echo(f"  {item.weight:6.3f}  {item.label()}{score}")
    for note in plan.notes:
        typer.echo(f"  note: {note}")
