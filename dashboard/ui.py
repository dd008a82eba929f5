"""Small rendering helpers shared by the pages: intros, error display, digit images."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import streamlit as st
from PIL import Image

from data.mnist import DataError
from model import runs
from model.runs import RunError


@contextmanager
def page_guard(title: str) -> Iterator[None]:
    """Show bad files and unexpected errors as a clear message, never a traceback."""
    try:
        yield
    except RunError as e:
        st.error(f"**A run file could not be read:** `{e.path}`\n\n{e}\n\n"
                 "The rest of the app keeps working; pick another run or epoch in the sidebar.")
    except DataError as e:
        st.error(f"**MNIST is not available:** {e}\n\nRun `make data` (or `python -m data.mnist`).")
    except Exception as e:  # noqa: BLE001 - last line of defence; Streamlit's control flow is BaseException
        st.error(f"**This page hit an unexpected problem** ({type(e).__name__}: {str(e)[:300]}). "
                 "Other pages still work; please report it with the run you had selected.")


@contextmanager
def section_guard(what: str) -> Iterator[None]:
    """Inside one section of a page: a bad run file becomes an st.error naming it, and the page goes on."""
    try:
        yield
    except RunError as e:
        st.error(f"**{what} cannot be shown:** `{e.path}` could not be read.\n\n{e}")


def require_run(sel) -> None:
    """Stop the page with a pointer to the Runs page when there is no run to show."""
    if sel.run is None:
        st.info("No runs yet. Train one on the **Runs** page.")
        st.page_link("app_pages/runs.py", label="Go to Runs", icon="🗂️")
        st.stop()


def require_checkpoints(sel, why: str) -> list[int]:
    """The selected run's checkpoint epochs; without a run or a checkpoint, say so and stop the page.

    Args:
        sel: the sidebar's `state.Selection`.
        why: what this page needs the weights for, e.g. "filters and activations need the weights".
    """
    require_run(sel)
    epochs = runs.checkpoint_epochs(sel.run.path)
    if not epochs:
        st.info(f"This run has no checkpoints yet (`checkpoints/epoch_NNN.safetensors`): {why}.")
        st.stop()
    return epochs


def intro(text: str, how_to_read: str) -> None:
    """The one or two sentences under a page title, plus a 'How to read this' expander."""
    st.markdown(text)
    with st.expander("How to read this"):
        st.markdown(how_to_read)


def digit(image: np.ndarray, size: int = 84) -> Image.Image:
    """A uint8 (28,28) digit as a crisp, upscaled PIL image."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    return img.resize((size, size), Image.NEAREST)


def digit_grid(images: Sequence[np.ndarray], captions: Sequence[str], columns: int = 8, size: int = 84) -> None:
    """Digits in a grid, each with its caption."""
    if len(images) == 0:
        st.caption("Nothing to show.")
        return
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, img, cap in zip(cols, images[start:start + columns], captions[start:start + columns]):
            col.image(digit(img, size), caption=cap)
