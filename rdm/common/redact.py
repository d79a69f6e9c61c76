"""Secrets never reach a message that is shown, logged or saved.

Two kinds are removed: credentials written into a URL (``http://user:pass@host``) and the values of
known secrets (the LLM API key and the worker token from the environment, plus any a front end
registers, e.g. from .streamlit/secrets.toml). An LLM server that echoes the key in its error or its
answer then shows up as ``***``; a URL stored with an image keeps no user name or password
(``strip_credentials``); and a server URL with credentials in it is refused (``refuse_credentials``):
the client would send them as Basic auth to be echoed back, and the key and token variables exist.
"""

from __future__ import annotations

import os
import re
from typing import Iterable
from urllib.parse import urlsplit

from rdm.errors import CredentialsInUrl

SECRET_ENV = ("RDM_LLM_API_KEY", "OPENAI_API_KEY", "RDM_WORKER_TOKEN")
MIN_SECRET_CHARS = 4  # shorter values would blank out ordinary words
URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]+@")
MASK = "***"
_registered: set[str] = set()


def register_secret(value: object) -> None:
    """Treat ``value`` as a secret from now on (in this process)."""
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_CHARS:
        _registered.add(value.strip())


def known_secrets() -> set[str]:
    values = {os.environ.get(name, "").strip() for name in SECRET_ENV}
    return {v for v in values | _registered if len(v) >= MIN_SECRET_CHARS}


def redact(text: object, extra: Iterable[str | None] = ()) -> str:
    """``text`` without URL credentials and without any known secret (or one of ``extra``)."""
    out = URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", str(text))
    secrets = known_secrets() | {v.strip() for v in extra if v and len(v.strip()) >= MIN_SECRET_CHARS}
    for secret in sorted(secrets, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


def public_url(url: str) -> str:
    """``url`` with any user name and password removed (host and port kept)."""
    parts = urlsplit(url)
    if not parts.hostname or "@" not in parts.netloc:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()


def strip_credentials(text: object) -> str:
    """``text`` with the user name and password of every URL in it removed (``http://u:p@h/`` -> ``http://h/``)."""
    return URL_CREDENTIALS.sub(r"\g<scheme>", str(text))


def refuse_credentials(url: str | None, what: str, instead: str) -> str | None:
    """``url`` if it carries no user name or password; else ``CredentialsInUrl`` naming the variable to use."""
    if url and URL_CREDENTIALS.search(url):
        raise CredentialsInUrl(f"the {what} {strip_credentials(url)} has a user name or password in it "
                               f"(user:password@): remove them from the URL and put the secret in {instead}")
    return url
