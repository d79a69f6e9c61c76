"""`rdm ingest --urls` against a local HTTP server: one 404, one timeout, one oversized file and one
non-image are each reported; the rest are stored with their captions, tags and authors; a second run
fetches nothing again; Unsplash Lite's own files are read as they are."""

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image
from typer.testing import CliRunner

from rdm.cli import app
from rdm.db import ImageStore
from rdm.ingest.urls import UNSPLASH_LICENCE, FetchPolicy, ingest_urls, read_url_table


def jpeg(colour, size=(96, 72)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


PHOTOS = {"/red.jpg": jpeg((200, 40, 40)), "/teal.jpg": jpeg((20, 160, 150)), "/gold.jpg": jpeg((220, 180, 40))}
HUGE = b"\xff\xd8" + b"0" * 400_000


@pytest.fixture(scope="module")
def server():
    hits = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits[self.path] = hits.get(self.path, 0) + 1
            if self.path == "/slow.jpg":
                time.sleep(1.5)
            if self.path.startswith("/to-"):  # a redirect, relative or to another scheme
                self.send_response(302)
                self.send_header("Location", {"/to-red": "/red.jpg", "/to-file": "file:///etc/passwd"}[self.path])
                self.end_headers()
                return
            if self.path == "/trickle.jpg":  # a byte at a time: each read is quick, the whole never ends
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _ in range(1000):
                        self.wfile.write(b"\xff")
                        self.wfile.flush()
                        time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            body, kind, status = PHOTOS.get(self.path), "image/jpeg", 200
            if self.path == "/huge.jpg":
                body = HUGE
            elif self.path == "/page.jpg":
                body, kind = b"<html>not a picture</html>", "text/html"
            elif body is None:
                body, kind, status = b"missing", "text/plain", 404
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout case)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def url_list(tmp_path, base) -> str:
    path = tmp_path / "urls.csv"
    rows = ["url,caption,tags,author"]
    for name, caption in (("red", "a red wall"), ("teal", "a teal door"), ("gold", "a golden field"),
                          ("missing", "gone"), ("slow", "too slow"), ("huge", "too big"), ("page", "a web page")):
        rows.append(f'{base}/{name}.jpg,{caption},"outdoor, {name}",Photographer {name}')
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_a_url_list_is_downloaded_with_every_failure_reported(server, tmp_path, tiny_db):
    base, hits = server
    store = ImageStore.open(tiny_db)
    before = store.stats().live
    policy = FetchPolicy(timeout_s=0.5, retries=1, max_bytes=200_000, backoff_s=0.05)
    report = ingest_urls(store, read_url_table(url_list(tmp_path, base)), policy=policy, category="downloads")
    reasons = {i.name.split(".")[0]: i.reason for i in report.skipped}
    assert {i.name for i in report.added} == {"red.jpg", "teal.jpg", "gold.jpg"}  # the URLs' file names
    assert len(report.added) == 3 and store.stats().live == before + 3
    assert "HTTP 404" in reasons["missing"]
    assert "timed out after 0.5 s" in reasons["slow"] and "2 attempts" in reasons["slow"]
    assert "over the 0.2 MB limit" in reasons["huge"]
    assert reasons["page"]  # an HTML page is not an image: the upload checks say so
    assert len(report.skipped) == 4
    stored = {r.caption: r for r in store.records(category="downloads")}
    assert set(stored) == {"a red wall", "a teal door", "a golden field"}
    red = stored["a red wall"]
    assert red.author == "Photographer red" and red.tags == ("outdoor", "red") and red.source == f"{base}/red.jpg"
    # a second run resumes: nothing fetched again that is already in the DB
    fetched = dict(hits)
    again = ingest_urls(store, read_url_table(url_list(tmp_path, base)), policy=policy)
    assert len(again.duplicates) == 3 and all(hits[p] == fetched[p] for p in ("/red.jpg", "/teal.jpg", "/gold.jpg"))


def test_unsplash_lite_files_are_read_as_they_are(server, tmp_path, tiny_db):
    base, _ = server
    photos = tmp_path / "photos.tsv000"
    photos.write_text("photo_id\tphoto_url\tphoto_image_url\tphoto_description\tai_description\t"
                      "photographer_username\n"
                      f"abc123\thttps://unsplash.com/photos/abc123\t{base}/teal.jpg\t\ta teal door in the sun\tana\n")
    keywords = tmp_path / "keywords.tsv000"
    keywords.write_text("photo_id\tkeyword\tai_service_1_confidence\nabc123\tdoor\t90\nabc123\tteal\t80\n")
    (row,) = read_url_table(photos, keywords)
    assert row.url == f"{base}/teal.jpg" and row.fields["caption"] == "a teal door in the sun"
    assert row.fields["author"] == "ana" and row.fields["source"] == "https://unsplash.com/photos/abc123"
    assert row.fields["tags"] == ["door", "teal"] and row.fields["licence"] == UNSPLASH_LICENCE
    out = CliRunner().invoke(app, ["ingest", "--urls", str(photos), "--keywords", str(keywords), "--db", str(tiny_db),
                                   "--json"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.stdout)["added"]) == 1
    (record,) = [r for r in ImageStore.open(tiny_db).records() if r.author == "ana"]
    assert record.licence == UNSPLASH_LICENCE and "door" in record.tags


def test_a_list_without_urls_and_no_input_are_one_line_errors(tmp_path, tiny_db):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,caption\nx,y\n")
    out = CliRunner().invoke(app, ["ingest", "--urls", str(bad), "--db", str(tiny_db)])
    assert out.exit_code == 1 and "has no url column" in out.output
    out = CliRunner().invoke(app, ["ingest", "--db", str(tiny_db)])
    assert out.exit_code == 1 and "nothing to ingest" in out.output


def test_a_one_column_list_is_read_right(server, tmp_path):
    """Defect 6: a sniffer took "u" of the header "url" for the delimiter."""
    base, _ = server
    path = tmp_path / "urls.csv"
    path.write_text(f"url\n{base}/red.jpg\n")
    (row,) = read_url_table(path)
    assert row.url == f"{base}/red.jpg" and not row.problem
    odd = tmp_path / "urls.txt"  # no telling suffix: sniffed among real delimiters only
    odd.write_text(f"url\n{base}/red.jpg\n")
    assert read_url_table(odd)[0].url == f"{base}/red.jpg"


def test_a_bad_row_is_that_rows_reason_and_the_rest_are_fetched(server, tmp_path, tiny_db):
    """Defect 6: a malformed URL, a redirect to another scheme and a URL that trickles are each one row's reason;
    a relative redirect is followed."""
    base, _ = server
    path = tmp_path / "urls.csv"
    path.write_text("url\nhttp://[::1\n" + "".join(f"{base}/{n}\n" for n in ("to-file", "trickle.jpg", "to-red")))
    policy = FetchPolicy(timeout_s=2, retries=0, deadline_s=0.5)
    report = ingest_urls(ImageStore.open(tiny_db), read_url_table(path), policy=policy)
    reasons = {i.name: i.reason for i in report.skipped}
    assert [i.name for i in report.added] == ["to-red.jpg"]
    assert "cannot be used" in reasons["row-1"] and "IPv6" in reasons["row-1"]
    assert "/etc/passwd' is not an http(s) URL" in reasons["to-file.jpg"]
    assert "took longer than 0.5 s in all" in reasons["trickle.jpg"]


def test_a_list_column_in_parquet_is_that_rows_reason(server, tmp_path):
    import pandas as pd

    base, _ = server
    path = tmp_path / "urls.parquet"
    pd.DataFrame({"url": [f"{base}/red.jpg", f"{base}/teal.jpg"], "tags": [["a", "b"], None]}).to_parquet(path)
    first, second = read_url_table(path)
    assert "a ndarray where text belongs" in first.problem or "a list where text belongs" in first.problem
    assert second.url == f"{base}/teal.jpg" and not second.problem


@pytest.mark.parametrize("content, match", [("", "is empty"), ("url\n" + "http://h/a.jpg\n" * 30, "over the 20 one list")])
def test_an_empty_or_unbounded_list_is_a_one_line_error(tmp_path, tiny_db, monkeypatch, content, match):
    """Defect 6: an empty file, /dev/null or a list past the bounds (/dev/zero has no size to stat) is refused."""
    import rdm.common.tables as tables

    monkeypatch.setattr(tables, "MAX_TABLE_ROWS", 20)
    monkeypatch.setattr(tables, "MAX_TABLE_BYTES", 1 << 16)
    path = tmp_path / "urls.csv"
    path.write_text(content)
    out = CliRunner().invoke(app, ["ingest", "--urls", str(path), "--db", str(tiny_db)])
    assert out.exit_code == 1 and match in out.output
    for device, said in (("/dev/null", "is empty"), ("/dev/zero", "is over 0 MB")):
        out = CliRunner().invoke(app, ["ingest", "--urls", device, "--db", str(tiny_db)])
        assert out.exit_code == 1 and said in out.output


def test_a_body_is_streamed_to_a_file_not_held_in_memory(server, tmp_path):
    """Defect 6: a 64-row chunk held every body in memory; each now waits in its own file until it is stored."""
    import httpx

    from rdm.ingest.urls import UrlRow, fetch

    base, _ = server
    target = tmp_path / "body"
    with httpx.Client() as client:
        got = fetch(client, UrlRow(f"{base}/red.jpg", "red.jpg", {"source": ""}), FetchPolicy(), target)
    assert target.read_bytes() == PHOTOS["/red.jpg"] and got.read() == PHOTOS["/red.jpg"]
