"""``atnl worker``: an RQ worker on the training queue.

The parent process never imports torch's CUDA side: each job runs in a forked
work horse that imports ``service.tasks`` -> ``models`` itself, so a CUDA
context is only ever created inside a job.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from service.settings import Settings

log = logging.getLogger("atnl.worker")


def run_worker(settings: Settings, burst: bool = False, name: str | None = None) -> bool:
    """Work the training queue until stopped (or, with ``burst``, until it is empty)."""
    conn = Redis.from_url(settings.redis_url)
    queue = Queue(settings.queue_name, connection=conn, serializer=JSONSerializer)
    worker = Worker([queue], connection=conn, serializer=JSONSerializer, name=name)
    log.info("worker %s on queue %r at %s", worker.name, settings.queue_name, settings.redis_url)
    return worker.work(burst=burst, logging_level=settings.log_level.upper())
