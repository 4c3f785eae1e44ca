"""Naming: every public coroutine function of the project is `a`-prefixed, as Django names
its async API (`aget`, `asave`, `aiterator`), so that a missing `await` shows at the call.

"Async" here means a callable that returns something to await or to `async for`: an
`async def`, a sync function wrapped by `db_task`, an async generator, or a function whose
return annotation is an awaitable or an async iterator (ChatService.afollow). Private and
dunder names (`__aiter__`, the `__call__` of ASGI middleware) are not checked.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator

import ai_features
import c3_app

PACKAGES = [ai_features, c3_app]
SKIPPED_MODULES = ("ai_features.migrations",)
# A return annotation naming one of these (a string under `from __future__ import
# annotations`, else a typing object whose str() carries its module).
ASYNC_RETURN = re.compile(
    r"(typing\.|collections\.abc\.)?"
    r"(AsyncIterator|AsyncIterable|AsyncGenerator|Awaitable|Coroutine)\b"
)
# Words that start with an "a" of their own: `append` is not the prefixed `ppend`.
A_WORDS = ("abort", "accept", "acquire", "add", "append", "apply", "authenticate", "await")


def project_modules() -> Iterator[object]:
    for package in PACKAGES:
        yield package
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.startswith(SKIPPED_MODULES):
                yield importlib.import_module(info.name)


def is_async(func: object) -> bool:
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        return True
    annotation = getattr(func, "__annotations__", {}).get("return")
    return annotation is not None and ASYNC_RETURN.match(str(annotation)) is not None


def is_prefixed(name: str) -> bool:
    return name.startswith("a") and not name.startswith(A_WORDS)


def public_functions(module: object) -> Iterator[tuple[str, object]]:
    """The module's own public functions and the public methods of its own classes."""
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if not attr.startswith("_") and callable(member):
                    yield f"{module.__name__}.{name}.{attr}", member
        elif callable(value):
            yield f"{module.__name__}.{name}", value


def test_public_async_callables_are_a_prefixed() -> None:
    unprefixed = sorted(
        qualified
        for module in project_modules()
        for qualified, func in public_functions(module)
        if is_async(func) and not is_prefixed(qualified.rsplit(".", 1)[1])
    )
    assert unprefixed == []


def test_the_check_sees_every_kind_of_async_callable() -> None:
    """The check above would catch each kind it claims to (a guard against a check that
    silently matches nothing)."""
    from ai_features.chat import persistence
    from ai_features.chat.service import ChatService

    assert inspect.iscoroutinefunction(ChatService.astart)
    assert inspect.iscoroutinefunction(persistence.aprepare_chat)  # wrapped by db_task
    assert is_async(ChatService.afollow)  # returns an async iterator
    assert not is_async(ChatService.begin_shutdown)
    assert not is_prefixed("append") and not is_prefixed("authenticate")
    assert is_prefixed("aappend") and is_prefixed("aauthenticate_stream")
    names = {q for m in project_modules() for q, _ in public_functions(m)}
    assert "ai_features.chat.service.ChatService.astart" in names
    assert "ai_features.chat.persistence.aprepare_chat" in names
