"""Training jobs, from the request to the checkpoint.

- ``job_queue``: the API's side: enqueue on RQ, look a job up, cancel or stop it.
- ``tasks``: what a job runs in the worker's work horse (``models.pipeline``), and its progress.
- ``worker``: ``atnl worker``, the RQ worker that survives Redis outages.

The routes are in ``service.routes.jobs``.
"""
