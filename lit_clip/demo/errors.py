"""Errors on the page: what the user gave that cannot be used is said there, in words, never as a traceback."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from typing import Callable

import gradio as gr

from lit_clip.datamodules.images import BadSampleError

log = logging.getLogger(__name__)


class DemoInputError(ValueError):
    """Something the user gave the page (a file, a name, a checkpoint) that cannot be used; its message says which
    and what was expected."""


def shown(function: Callable) -> Callable:
    """``function`` for a page event: a bad input becomes a message on the page (``gr.Error``, also what Gradio's
    client raises); anything else too, with its type, and its traceback goes to the server's log. An event that
    yields (a picture that grows) stays a generator, its every step guarded."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def steps_on_page(*args, **kwargs):
            with as_message():
                yield from function(*args, **kwargs)

        return steps_on_page

    @functools.wraps(function)
    def on_page(*args, **kwargs):
        with as_message():
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
