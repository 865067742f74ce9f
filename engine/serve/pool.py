"""The service as a Ray Serve deployment: N replicas behind ConsistentHashRouter.

The router hashes the `x-session-id` header (Ray reads the header name from
RAY_SERVE_SESSION_ID_HEADER_KEY), so every turn of a session lands on the replica that holds
its KV cache. When that replica dies the ring is rebuilt and the next turn lands elsewhere,
where it costs one re-prefill: the request carries the whole conversation.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ray import serve
from ray.serve.config import RequestRouterConfig
from starlette.requests import Request
from starlette.responses import Response

from engine.serve.app import dispatch
from engine.serve.options import ServeOptions

APP_NAME = "copyspec"
ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"


@serve.deployment(name="CopySpec", max_ongoing_requests=32)
class Replica:
    """One engine per replica; turns queue on its engine thread."""

    def __init__(self, options: dict[str, Any]) -> None:
        replica = serve.get_replica_context().replica_id.unique_id
        self.engine = ServeOptions(**options).build(replica)

    async def __call__(self, request: Request) -> Response:
        return await dispatch(self.engine, request)


def deployment(options: ServeOptions, replicas: int, cpus_per_replica: float) -> Any:
    """The bound application: `replicas` copies with session-affine routing."""
    return Replica.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        request_router_config=RequestRouterConfig(
            request_router_class=ROUTER,
            # Strict affinity: a fallback replica would answer, but after a full re-prefill,
            # and the router falls back whenever a busy replica is slow (>0.1 s) to answer its
            # queue-length probe: with 1 fallback, 4 replicas on 2 busy cores re-prefilled
            # almost every turn 2. A dead replica leaves the ring, so strict never strands one.
            request_router_kwargs={"num_virtual_nodes": 100, "num_fallback_replicas": 0},
        ),
    ).bind(asdict(options))


def start(
    options: ServeOptions,
    replicas: int,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    cpus_per_replica: float = 1.0,
    num_cpus: int | None = None,
) -> None:
    """Join the Ray cluster at `address` (None: start one on this machine) and deploy.
    Blocks until the replicas are up."""
    import ray

    if address:
        ray.init(address=address)
    else:
        # a local cluster stays on loopback; `ray start --head` is how a pool spans machines
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(options, replicas, cpus_per_replica), name=APP_NAME, route_prefix="/")


def stop(address: str | None) -> None:
    """Undo `start`: on a cluster of its own, stop Ray (replicas and all, at once); on a
    shared cluster, remove only this application."""
    import ray

    if address:
        serve.delete(APP_NAME)
    ray.shutdown()
