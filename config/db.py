"""Database connections on the asynchronous request path."""

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from django.db import connections

P = ParamSpec("P")
T = TypeVar("T")


def releasing_connections(func: Callable[P, T]) -> Callable[P, T]:
    """func, after which this thread's database connections are closed (pooled: given back).

    Under ASGI, Django closes a request's connections only once its response is finished: for
    a stream, after the provider's last byte. A request that reads a key or the rules on its
    way in would otherwise keep its connection, one of the pool's few, for all that time.
    A connection inside a transaction is left alone (tests run in one).
    """

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        finally:
            for connection in connections.all(initialized_only=True):
                if not connection.in_atomic_block:
                    connection.close()

    return wrapper
