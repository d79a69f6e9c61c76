"""Ingest all of Pillow's own test images (fuzz and crash files included) in one `rdm ingest`.

Pillow's source distribution ships ``Tests/images``: about 1,000 files, many deliberately corrupt,
truncated, oversized or in odd modes: a ready adversarial corpus. This script fetches it with pip
(``pip download --no-binary :all: pillow``, cached in bench/out/), ingests the folder into a fresh
DB with one command, and checks what a user is promised:

- the command exits 0;
- every file is either stored or reported with a reason (nothing silently dropped);
- the peak memory of the ingest stays under the bound (default 1.5 GB);
- `rdm check` finds the DB consistent.

Run on demand (it is not part of the default suite): ``python bench/pillow_corpus.py [--json]``.
Exit code 1 when a promise is broken.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "out" / "pillow-sdist"
RDM = [str(Path(sys.executable).with_name("rdm"))]  # the console script of this interpreter's venv


def corpus(cache: Path) -> Path:
    """Pillow's Tests/images, downloaded and extracted once."""
    images = next(cache.glob("Pillow-*/Tests/images"), None) or next(cache.glob("pillow-*/Tests/images"), None)
    if images is not None:
        return images
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q",
                    "-d", str(cache), "pillow"], check=True)
    (sdist,) = cache.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/Tests/images/" in m.name and (m.isfile() or m.isdir())]
        archive.extractall(cache, members=members, filter="data")
    return next(cache.glob("*/Tests/images"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="conse", help="encoder of the new DB (default: conse, the offline one)")
    parser.add_argument("--max-rss-gb", type=float, default=1.5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    images = corpus(CACHE)
    files = sorted(p for p in images.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(images).parts))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        started = time.monotonic()
        ingest = subprocess.run([*RDM, "ingest", str(images), "--db", str(db), "--encoder", args.encoder, "--json"],
                                capture_output=True, text=True, env=env)
        seconds = time.monotonic() - started
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
        report = json.loads(ingest.stdout) if ingest.returncode == 0 else {}
        check = subprocess.run([*RDM, "check", "--db", str(db), "--json"], capture_output=True, text=True, env=env)
        consistent = check.returncode == 0 and json.loads(check.stdout)["ok"]
    answered = len(report.get("added", [])) + len(report.get("duplicates", [])) + len(report.get("skipped", []))
    no_reason = [s["name"] for s in report.get("skipped", []) if not s.get("reason")]
    result = {
        "files": len(files), "added": len(report.get("added", [])), "duplicates": len(report.get("duplicates", [])),
        "skipped": len(report.get("skipped", [])), "answered": answered, "exit_code": ingest.returncode,
        "peak_rss_gb": round(peak_gb, 3), "seconds": round(seconds, 1), "check_ok": consistent,
        "skipped_without_reason": no_reason,
    }
    broken = [what for what, ok in (
        ("exit code 0", ingest.returncode == 0), ("every file stored or reported", answered == len(files)),
        ("every skip has a reason", not no_reason), (f"peak RSS under {args.max_rss_gb} GB", peak_gb < args.max_rss_gb),
        ("rdm check clean", consistent)) if not ok]
    result["broken"] = broken
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"Pillow Tests/images: {len(files)} files -> {result['added']} stored, {result['duplicates']} duplicates, "
              f"{result['skipped']} skipped with a reason; exit {ingest.returncode}; peak RSS {peak_gb:.2f} GB; "
              f"{seconds:.0f} s; rdm check {'clean' if consistent else 'NOT clean'}")
        if ingest.returncode != 0:
            print(ingest.stderr[-3000:])
        for what in broken:
            print(f"BROKEN: {what}")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
