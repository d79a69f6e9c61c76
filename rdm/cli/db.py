"""The DB commands: ingest, search, similar, stats, check, reindex, edit, delete/restore/purge, dupes, history,
undo, map, build-demo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rdm.cli.app import (DbOption, JsonOption, Progress, RetrievalOption, app, fusion_of, open_store, print_hits,
                         print_json)
from rdm.db.copies import DEFAULT_MAX_DISTANCE
from rdm.errors import RDMError
from rdm.settings import load_settings


@app.command()
def ingest(paths: list[Path] = typer.Argument(None, help="Image files, folders or .zip archives."),
           urls: Optional[Path] = typer.Option(None, "--urls", help="A CSV/TSV/parquet URL list to download "
                                               "(url, caption, tags, author; Unsplash Lite's photos.tsv000 too)."),
           keywords: Optional[Path] = typer.Option(None, "--keywords", help="With --urls: Unsplash's "
                                                   "keywords.tsv000, as tags."),
           workers: int = typer.Option(8, "--workers", help="With --urls: downloads at a time."),
           timeout: float = typer.Option(20.0, "--timeout", help="With --urls: seconds to connect, and between reads."),
           deadline: float = typer.Option(120.0, "--deadline", help="With --urls: seconds per URL, all attempts "
                                          "together."),
           db: Optional[Path] = DbOption,
           category: Optional[str] = typer.Option(None, help="Category for every new image."),
           tags: Optional[str] = typer.Option(None, help="Comma-separated tags for every new image."),
           encoder: Optional[str] = typer.Option(None, help="Encoder for a NEW DB (default: auto)."),
           as_json: bool = JsonOption) -> None:
    """Add images to the DB (created if missing) from files or a URL list; each bad one is reported."""
    from rdm.db import ImageStore
    from rdm.ingest.urls import FetchPolicy, ingest_urls, read_url_table
    from rdm.encoders import resolve_encoder

    if not paths and urls is None:
        raise RDMError("nothing to ingest: give image files, folders or zips, or --urls LIST.csv")
    rows = read_url_table(urls, keywords) if urls is not None else []  # a bad list is said before any model loads
    settings = load_settings(db=db)
    if (settings.db / "meta.sqlite").exists():
        store = open_store(db, encoder)
    else:
        choice = resolve_encoder(encoder or settings.encoder)
        store = ImageStore.create(settings.db, choice.encoder, encoder_reason=choice.reason)
    progress = Progress("downloading" if urls else "embedding")
    if urls is not None:
        report = ingest_urls(store, rows, policy=FetchPolicy(timeout_s=timeout, workers=workers, deadline_s=deadline), category=category,
                             tags=tags, who=settings.user, progress=progress)
    else:
        report = store.ingest(paths, category=category, tags=tags, progress=progress, who=settings.user)
    progress.close()
    _print_report(report, as_json)


@app.command("import-embeddings")
def import_embeddings_command(
        source: Path = typer.Argument(..., help="clip-retrieval's output folder (img_emb/, metadata/) or a .npy."),
        metadata: Optional[Path] = typer.Option(None, "--metadata", help="With a .npy: a parquet/CSV table, one "
                                                "row per embedding (path, caption, tags, category, author)."),
        encoder: str = typer.Option(..., "--encoder", help="The model the embeddings came from, e.g. "
                                    "open_clip:ViT-B-32/laion2b_s34b_b79k; must be the DB's."),
        db: Optional[Path] = DbOption,
        category: Optional[str] = typer.Option(None, help="Category for rows without one."),
        tags: Optional[str] = typer.Option(None, help="Comma-separated tags for every image."),
        as_json: bool = JsonOption) -> None:
    """Add images with embeddings computed elsewhere (the DB is created for that encoder if missing)."""
    from rdm.ingest.embeddings import import_embeddings, read_embeddings, store_for

    settings = load_settings(db=db)
    table = read_embeddings(source, metadata)
    store = store_for(settings.db, encoder, table.vectors.shape[1], source)
    progress = Progress("storing")
    report = import_embeddings(store, table, encoder, category=category, tags=tags, who=settings.user,
                               progress=progress)
    progress.close()
    _print_report(report, as_json)


def _print_report(report, as_json: bool) -> None:
    if as_json:
        print_json({"added": [{"name": i.name, "id": i.image_id} for i in report.added],
                    "duplicates": [{"name": i.name, "id": i.image_id, "reason": i.reason} for i in report.duplicates],
                    "skipped": [{"name": i.name, "reason": i.reason} for i in report.skipped]})
        return
    for item in report.duplicates + report.skipped:
        typer.echo(f"{item.status:>9}: {item.name}: {item.reason}")
    typer.echo(report.summary())


@app.command()
def search(text: str, k: int = typer.Option(10, "-k", help="Number of hits."),
           category: Optional[str] = typer.Option(None), tag: Optional[str] = typer.Option(None),
           retrieval: str = RetrievalOption, db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Find images matching a text description."""
    print_hits(open_store(db).search(text, k, fusion=fusion_of(retrieval), category=category, tag=tag), as_json)


@app.command()
def similar(image_id: int = typer.Argument(..., metavar="ID"), k: int = typer.Option(10, "-k"),
            db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Find images similar to image ID."""
    print_hits(open_store(db).similar(image_id, k), as_json)


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
    """Report inconsistencies between files, rows, vectors and the vector index."""
    report = open_store(db).check(repair=repair)
    if as_json:
        print_json({"ok": report.ok, "problems": list(report.problems), "repaired": list(report.repaired)})
    else:
        for p in report.problems:
            typer.echo(f"problem: {p}")
        for r in report.repaired:
            typer.echo(f"repaired: {r}")
        typer.echo("DB is consistent" if report.ok else ("repaired" if repair else "run `rdm check --repair` to fix"))
    if not report.ok and not repair:
        raise typer.Exit(1)


@app.command()
def reindex(encoder: str = typer.Option("auto", help="open_clip[:MODEL/PRETRAINED], conse, tiny or auto."),
            db: Optional[Path] = DbOption) -> None:
    """Re-embed every image with another encoder (the DB switches to it)."""
    from rdm.encoders import resolve_encoder

    store = open_store(db)
    choice = resolve_encoder(encoder)
    progress = Progress("re-embedding")
    n = store.reindex(choice.encoder, reason=choice.reason, progress=progress)
    progress.close()
    typer.echo(f"re-embedded {n} images with {choice.encoder.name}")


@app.command()
def edit(image_id: int = typer.Argument(..., metavar="ID"), category: Optional[str] = typer.Option(None),
         tags: Optional[str] = typer.Option(None, help="Comma-separated; replaces the tags."),
         caption: Optional[str] = typer.Option(None), db: Optional[Path] = DbOption) -> None:
    """Edit an image's category, tags or caption."""
    rec = open_store(db).edit(image_id, category=category, tags=tags, caption=caption, who=load_settings().user)
    typer.echo(f"{rec.id}: category={rec.category!r} tags={','.join(rec.tags)!r} caption={rec.caption!r}")


def _change(action: str, ids: list[int], db: Optional[Path]) -> None:
    n = getattr(open_store(db), action)(ids, who=load_settings().user)
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


@app.command()
def dupes(max_distance: int = typer.Option(DEFAULT_MAX_DISTANCE, "--max-distance",
                                           help="Largest perceptual-hash distance (bits of 64) between copies."),
          keep_best: bool = typer.Option(False, "--keep-best", help="Soft-delete every copy, keeping each group's "
                                         "largest image (`rdm restore` brings them back)."),
          db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Copies of one photo (resized, re-encoded): groups around the image worth keeping."""
    from rdm.db.copies import find_copies

    store = open_store(db)
    groups = find_copies(store, max_distance=max_distance)
    copies = [i for g in groups for i in g.members]
    deleted = store.delete(copies, who=load_settings().user) if keep_best and copies else 0
    if as_json:
        return print_json({"groups": [g.to_dict() for g in groups], "deleted": deleted})
    if not groups:
        typer.echo("no copies found")
    for g in groups:
        typer.echo(f"keep #{g.leader}; copies: " + ", ".join(f"#{i} (distance {d})"
                                                           for i, d in zip(g.members, g.distances)))
    if keep_best:
        typer.echo(f"deleted {deleted} copies (restorable with `rdm restore ID...`)")


@app.command()
def history(image_id: Optional[int] = typer.Argument(None, metavar="[ID]", help="Only this image's changes."),
            limit: int = typer.Option(50, "--limit", help="How many changes, newest first."),
            db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Curation changes (upload, edit, delete, restore, purge): when, who, before and after."""
    changes = open_store(db).history(image_id, limit)
    if as_json:
        return print_json({"changes": [c.to_dict() for c in changes]})
    if not changes:
        typer.echo("no changes recorded")
    for c in changes:
        state = (f" [reverted by {c.undone_by}]" if c.undone_by else
                 " [cannot be undone]" if c.action == "purge" else "")
        who = f" by {c.who}" if c.who else ""
        typer.echo(f"{c.id:>6}  {c.at}{who}  #{c.image_id} {c.action}: {c.summary()}  (batch {c.batch}){state}")


@app.command()
def undo(change_id: int = typer.Argument(..., metavar="CHANGE", help="A change id from `rdm history`."),
         whole_batch: bool = typer.Option(False, "--all", help="Revert the whole bulk action it was part of."),
         db: Optional[Path] = DbOption) -> None:
    """Revert a curation change (or its whole bulk action); a purge cannot be undone."""
    n = open_store(db).undo(change_id, whole_batch=whole_batch, who=load_settings().user)
    typer.echo(f"reverted {n} change(s); `rdm history` shows the revert, which can itself be undone")


@app.command("index")
def index_command(kind: Optional[str] = typer.Option(None, "--kind", help="auto (flat, then IVF with FAISS or HNSW "
                                                     "with Milvus from 50k vectors), flat, ivf or hnsw (Milvus); "
                                                     "rebuilds the index and keeps the choice."),
                  backend: Optional[str] = typer.Option(None, "--backend", help="faiss or milvus: move the DB's "
                                                        "index to that engine (RDM_MILVUS_URI: which server)."),
                  db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """The vector index: its engine, kind and measured recall@10; with --kind or --backend, rebuilt so."""
    from dataclasses import asdict

    store = open_store(db)
    info = store.rebuild_index(kind, backend) if kind or backend else store.index_info
    if as_json:
        return print_json({**asdict(info), "kind_setting": store.index_kind, "where": store.index_backend.where()})
    typer.echo(f"{info.describe()} (setting: {store.index_kind}; {store.index_backend.where()})")


@app.command("map")
def map_command(refit: bool = typer.Option(False, "--refit", help="Fit UMAP afresh instead of placing new images "
                                            "with the saved fit."),
                db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Compute the embedding map's layout now and save it in the DB folder (the dashboard then opens it)."""
    from rdm.curation.map_layouts import layout_file, map_layout

    store = open_store(db)
    layout = map_layout(store, refit=refit)
    path = layout_file(store, store.index_version)
    if as_json:
        return print_json({"images": len(layout.ids), "method": layout.method, "note": layout.note,
                           "index_version": store.index_version, "fit_version": layout.fit_version,
                           "file": str(path)})
    typer.echo(f"{layout.note}\nsaved: {path}")


@app.command("build-demo")
def build_demo(db: Optional[Path] = DbOption,
               encoder: str = typer.Option("auto", help="auto: open_clip if its weights load, else conse."),
               if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if the DB exists.")) -> None:
    """Build the demo DB from data/demo-photos."""
    from rdm.ingest.demo import build_demo_db
    from rdm.settings import DEMO_DB

    path = db or DEMO_DB
    if (path / "meta.sqlite").exists():
        if if_missing:
            return
        raise RDMError(f"a DB already exists at {path}; remove it first to rebuild")
    progress = Progress("building demo DB")
    store, report = build_demo_db(path, encoder=encoder, progress=progress)
    progress.close()
    st = store.stats()
    typer.echo(f"demo DB at {path}: {report.summary()}; encoder {st.encoder}: {st.encoder_reason}")
