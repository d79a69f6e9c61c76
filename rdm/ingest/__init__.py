"""Ways images come into the DB, each ending in ``ImageStore.ingest_candidates``: uploads from the browser
(``uploads``), URL lists with their metadata (``urls``), embeddings computed elsewhere (``embeddings``) and the
bundled demo photos (``demo``). Folders and zips are read by ``rdm.common.sources``. May import ``rdm.db``,
``rdm.encoders``, ``rdm.common`` and the shared modules.
"""

from rdm.ingest.demo import build_demo_db, manifest_metadata
from rdm.ingest.embeddings import import_embeddings, read_embeddings, store_for
from rdm.ingest.uploads import save_input_photo
from rdm.ingest.urls import UNSPLASH_LICENCE, FetchPolicy, ingest_urls, read_url_table

__all__ = ["UNSPLASH_LICENCE", "FetchPolicy", "build_demo_db", "import_embeddings", "ingest_urls", "manifest_metadata",
           "read_embeddings", "read_url_table", "save_input_photo", "store_for"]
