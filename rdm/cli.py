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


def open_store(db: Optional[Path], encoder: Optional[str] = None):
    """The DB named by --db, env RDM_DB, or the demo DB; errors become one-line messages."""
    from rdm.encoders import EncoderError, load_encoder
    from rdm.store import ImageStore, StoreError

    path = load_settings(db=db).db
    try:
        return ImageStore.open(path, load_encoder(encoder) if encoder else None)
    except (StoreError, EncoderError) as exc:
        fail(str(exc))


class _Progress:
    """A stderr progress bar, so `--json` output on stdout stays clean."""

    def __init__(self, label: str):
        import click

        self.label, self.bar, self.click = label, None, click

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        print_json({"hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        typer.echo("no hits")
    for h in hits:
        typer.echo(f"{h.id:>6}  {h.score:6.3f}  {h.record.category:<12} {h.record.filename}"
                   f"  {h.record.caption}")


@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="Image files, folders or .zip archives."),
           db: Optional[Path] = DbOption,
           category: Optional[str] = typer.Option(None, help="Category for every new image."),
           tags: Optional[str] = typer.Option(None, help="Comma-separated tags for every new image."),
           encoder: Optional[str] = typer.Option(None, help="Encoder for a NEW DB (default: auto)."),
           as_json: bool = JsonOption) -> None:
    """Add images to the DB (created if missing); bad files are reported and skipped."""
    from rdm.encoders import EncoderError, resolve_encoder
    from rdm.store import ImageStore, StoreError

    settings = load_settings(db=db)
    try:
        if (settings.db / "meta.sqlite").exists():
            store = open_store(db, encoder)
        else:
            choice = resolve_encoder(encoder or settings.encoder)
            store = ImageStore.create(settings.db, choice.encoder, encoder_reason=choice.reason)
        progress = _Progress("embedding")
        report = store.ingest(paths, category=category, tags=tags, progress=progress)
        progress.close()
    except (StoreError, EncoderError) as exc:
        fail(str(exc))
    if as_json:
        print_json({"added": [{"name": i.name, "id": i.image_id} for i in report.added],
                    "duplicates": [{"name": i.name, "id": i.image_id, "reason": i.reason}
                                   for i in report.duplicates],
                    "skipped": [{"name": i.name, "reason": i.reason} for i in report.skipped]})
        return
    for item in report.duplicates + report.skipped:
        typer.echo(f"{item.status:>9}: {item.name}: {item.reason}")
    typer.echo(report.summary())


@app.command()
def search(text: str, k: int = typer.Option(10, "-k", help="Number of hits."),
           category: Optional[str] = typer.Option(None), tag: Optional[str] = typer.Option(None),
           db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Find images matching a text description."""
    from rdm.encoders import EncoderError
    from rdm.store import StoreError

    store = open_store(db)
    try:
        hits = store.search(text, k, category=category, tag=tag)
    except (StoreError, EncoderError) as exc:
        fail(str(exc))
    _print_hits(hits, as_json)


@app.command()
def similar(image_id: int = typer.Argument(..., metavar="ID"), k: int = typer.Option(10, "-k"),
            db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Find images similar to image ID."""
    from rdm.store import StoreError

    store = open_store(db)
    try:
        hits = store.similar(image_id, k)
    except StoreError as exc:
        fail(str(exc))
    _print_hits(hits, as_json)


@app.command()
def stats(db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Counts per category, live/deleted, encoder and index version."""
    st = open_store(db).stats()
    if as_json:
        print_json(st.to_dict())
        return
    typer.echo(f"DB {st.path}: {st.live} live, {st.deleted} deleted; encoder {st.encoder} "
               f"({st.dim}-d), index version {st.index_version}")
    for cat, n in st.by_category.items():
        typer.echo(f"  {cat or '(none)':<14} {n}")


@app.command()
def check(repair: bool = typer.Option(False, "--repair", help="Fix what is found."),
          db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Report inconsistencies between files, rows, vectors and the FAISS index."""
    report = open_store(db).check(repair=repair)
    if as_json:
        print_json({"ok": report.ok, "problems": list(report.problems), "repaired": list(report.repaired)})
    else:
        for p in report.problems:
            typer.echo(f"problem: {p}")
        for r in report.repaired:
            typer.echo(f"repaired: {r}")
        typer.echo("DB is consistent" if report.ok else
                   ("repaired" if repair else "run `rdm check --repair` to fix"))
    if not report.ok and not repair:
        raise typer.Exit(1)


@app.command()
def reindex(encoder: str = typer.Option("auto", help="open_clip[:MODEL/PRETRAINED], conse, tiny or auto."),
            db: Optional[Path] = DbOption) -> None:
    """Re-embed every image with another encoder (the DB switches to it)."""
    from rdm.encoders import EncoderError, resolve_encoder
    from rdm.store import StoreError

    store = open_store(db)
    try:
        choice = resolve_encoder(encoder)
        progress = _Progress("re-embedding")
        n = store.reindex(choice.encoder, reason=choice.reason, progress=progress)
        progress.close()
    except (StoreError, EncoderError) as exc:
        fail(str(exc))
    typer.echo(f"re-embedded {n} images with {choice.encoder.name}")


@app.command()
def edit(image_id: int = typer.Argument(..., metavar="ID"), category: Optional[str] = typer.Option(None),
         tags: Optional[str] = typer.Option(None, help="Comma-separated; replaces the tags."),
         caption: Optional[str] = typer.Option(None), db: Optional[Path] = DbOption) -> None:
    """Edit an image's category, tags or caption."""
    from rdm.store import StoreError

    try:
        rec = open_store(db).edit(image_id, category=category, tags=tags, caption=caption)
    except StoreError as exc:
        fail(str(exc))
    typer.echo(f"{rec.id}: category={rec.category!r} tags={','.join(rec.tags)!r} caption={rec.caption!r}")


def _change(action: str, ids: list[int], db: Optional[Path]) -> None:
    from rdm.store import StoreError

    store = open_store(db)
    try:
        n = getattr(store, action)(ids)
    except StoreError as exc:
        fail(str(exc))
    typer.echo(f"{action}: {n} image(s) changed")


@app.command()
def delete(ids: list[int] = typer.Argument(..., metavar="ID..."), db: Optional[Path] = DbOption) -> None:
    """Soft-delete images (hidden from search; `rdm restore` brings them back)."""
    _change("delete", ids, db)


@app.command()
def restore(ids: list[int] = typer.Argument(..., metavar="ID..."), db: Optional[Path] = DbOption) -> None:
    """Restore soft-deleted images."""
    _change("restore", ids, db)


@app.command()
def purge(ids: list[int] = typer.Argument(..., metavar="ID..."), db: Optional[Path] = DbOption) -> None:
    """Delete images for good: rows, vectors and files."""
    _change("purge", ids, db)


@app.command("build-demo")
def build_demo(db: Optional[Path] = DbOption,
               encoder: str = typer.Option("auto", help="auto: open_clip if its weights load, else conse."),
               if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if the DB exists.")) -> None:
    """Build the demo DB from data/demo-photos."""
    from rdm.demo import build_demo_db
    from rdm.encoders import EncoderError
    from rdm.settings import DEMO_DB
    from rdm.store import StoreError

    path = db or DEMO_DB
    if (path / "meta.sqlite").exists():
        if if_missing:
            return
        fail(f"a DB already exists at {path}; remove it first to rebuild")
    try:
        progress = _Progress("building demo DB")
        store, report = build_demo_db(path, encoder=encoder, progress=progress)
        progress.close()
    except (StoreError, EncoderError) as exc:
        fail(str(exc))
    st = store.stats()
    typer.echo(f"demo DB at {path}: {report.summary()}; encoder {st.encoder}: {st.encoder_reason}")


# --- retrieval commands (decompose, retrieve, plan, evaluate) ---


@app.command("decompose")
def decompose_command(
    prompt: str = typer.Argument(..., help="The ad prompt to split into sub-queries."),
    backend: str = typer.Option("offline", "--backend",
                                help="llm (env RDM_LLM_BASE_URL / RDM_LLM_MODEL / RDM_LLM_API_KEY), "
                                     "offline (spaCy) or keybert (the seed's baseline keywords)."),
    as_json: bool = JsonOption,
) -> None:
    """Split a prompt into weighted sub-queries and a short summarised query."""
    from rdm.decompose import DecompositionError, decompose

    try:
        result = decompose(prompt, backend)
    except DecompositionError as exc:
        fail(str(exc))
    if as_json:
        return print_json(result.to_dict())
    typer.echo(f"backend: {result.backend}")
    if result.fallback_reason:
        typer.echo(f"LLM not used: {result.fallback_reason}")
    typer.echo(f"summary: {result.summary}")
    typer.echo(f"{'weight':>7}  {'score':>6}  sub-query")
    for q in result.subqueries:
        typer.echo(f"{q.weight:7.3f}  {'-' if q.score is None else f'{q.score:.3f}':>6}  {q.text}")
    for repair in result.repairs:
        typer.echo(f"repaired: {repair}")


# --- generation commands (generate, worker, runs) ---


def main() -> None:
    app()


if __name__ == "__main__":
    main()
