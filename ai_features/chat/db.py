"""Running sync ORM code from async code, the one way this project does it."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def db_task(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Wrap a sync function that touches the database so async code can await it.

    It runs in Django's thread-sensitive sync_to_async thread (so the event loop thread
    never holds a connection), and stale or broken connections are dropped before and after
    each unit of work, as Django does around every request.
    """

    @functools.wraps(func)
    def unit_of_work(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(unit_of_work, thread_sensitive=True)
