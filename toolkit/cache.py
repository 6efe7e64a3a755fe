"""Redis, mlkit's optional online store: a client that fails clearly or not at all."""

from __future__ import annotations

from .config import mask_url
from .errors import MlkitError


def redis_client(url: str | None, *, required: bool = True):
    """A connected client, or None when Redis is off or down and not `required`."""
    if not url:
        if required:
            raise MlkitError(
                "Redis is disabled in the configuration",
                hint="set redis.enabled: true or pass --redis URL",
            )
        return None
    import redis  # only now: the client costs its importer about 0.05-0.1 s

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        client.ping()
    except redis.AuthenticationError:
        raise MlkitError(
            f"Redis at {mask_url(url)} refused the password",
            hint="check REDIS_PASSWORD or the Redis URL",
        ) from None
    except (redis.RedisError, ValueError) as exc:
        if not required:
            return None
        raise MlkitError(
            f"cannot reach Redis at {mask_url(url)}: {exc}",
            hint="is redis-server running? (redis-cli ping)",
        ) from None
    return client
