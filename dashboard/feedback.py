"""What the user sees when something fails or succeeds: error boxes, flashed messages, page headers.

An ``RDMError`` says what failed and how to fix it, and is shown as it is. Anything else is a bug:
the user sees "internal error <id>" and the full traceback goes to the server log under that id,
so a report can be matched to its traceback. No page ever shows a traceback.
"""

from __future__ import annotations

import logging
import secrets
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator

import streamlit as st

from rdm.errors import RDMError
from rdm.health import Check
from rdm.common.redact import redact

log = logging.getLogger("rdm.dashboard")
FLASH_KEY = "_flash"


def internal_error(action: str) -> str:
    """Log the exception being handled under a new short id; the message to show instead of it."""
    error_id = secrets.token_hex(4)
    log.error("internal error %s while %s\n%s", error_id, action.lower(), redact(traceback.format_exc()))
    return (f"**{action} failed: internal error {error_id}.** This is a bug in RDM Studio, not in your input; "
            f"the traceback is in the server log under `{error_id}`. The rest of the page still works.")


@contextmanager
def guard(action: str) -> Iterator[None]:
    """Show what failed and how to fix it instead of a traceback; the rest of the page goes on."""
    try:
        yield
    except RDMError as exc:
        st.error(f"**{action} failed.** {redact(exc)}", icon=":material/error:")
    except Exception:  # noqa: BLE001 - no page may show a traceback
        st.error(internal_error(action), icon=":material/bug_report:")


def flash(kind: str, text: str) -> None:
    """A message for the next run (callbacks run before the page draws)."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, text))


def show_flashes() -> None:
    for kind, text in st.session_state.pop(FLASH_KEY, []):
        {"success": st.success, "error": st.error, "warning": st.warning}.get(kind, st.info)(text)


def run_safely(action: str, fn: Callable[[], str | None]) -> None:
    """Run a callback's work; its result (or its error) is flashed on the next run."""
    try:
        message = fn()
    except RDMError as exc:
        flash("error", f"**{action} failed.** {redact(exc)}")
    except Exception:  # noqa: BLE001
        flash("error", internal_error(action))
    else:
        if message:
            flash("success", message)


def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)
    show_flashes()


def show_check(check: Check) -> None:
    box = {"ok": st.success, "warning": st.warning, "error": st.error}[check.level]
    icon = {"ok": ":material/check_circle:", "warning": ":material/warning:", "error": ":material/error:"}
    box(f"**{check.title}**  \n{check.detail}", icon=icon[check.level])
