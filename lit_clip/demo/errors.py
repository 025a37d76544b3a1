"""Errors on the page: what the user gave that cannot be used is said there, in words, never as a traceback."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from typing import Callable

import gradio as gr

from lit_clip.datamodules.images import BadSampleError

log = logging.getLogger(__name__)

# The page's events run one at a time: they share cached models whose class names, prompts, thresholds or beam sizes
# they set for their call (and a CPU or a GPU is busy with one anyway). Gradio runs events in worker threads.
ONE_AT_A_TIME = threading.Lock()


class DemoInputError(ValueError):
    """Something the user gave the page (a file, a name, a checkpoint) that cannot be used; its message says which
    and what was expected."""


def shown(function: Callable) -> Callable:
    """``function`` for a page event: run one event at a time (:data:`ONE_AT_A_TIME`); a bad input becomes a message
    on the page (``gr.Error``, also what Gradio's client raises); anything else too, with its type, and its traceback
    goes to the server's log. An event that yields (a picture that grows) stays a generator, its every step
    guarded, and holds the page until it ends."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def steps_on_page(*args, **kwargs):
            with ONE_AT_A_TIME, as_message():
                yield from function(*args, **kwargs)

        return steps_on_page

    @functools.wraps(function)
    def on_page(*args, **kwargs):
        with ONE_AT_A_TIME, as_message():
            return function(*args, **kwargs)

    return on_page


@contextlib.contextmanager
def as_message():
    """Errors raised inside become ``gr.Error`` messages (see :func:`shown`)."""
    try:
        yield
    except gr.Error:
        raise
    except (DemoInputError, BadSampleError, FileNotFoundError) as error:
        raise gr.Error(str(error), print_exception=False) from error
    except Exception as error:
        log.exception("a demo page event failed")
        raise gr.Error(f"{type(error).__name__}: {error}", print_exception=False) from error
