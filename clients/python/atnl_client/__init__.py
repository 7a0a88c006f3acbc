"""A typed Python client of the ATNL REST service (docs/API.md): ``Client`` and ``AsyncClient``,
one method per operation, images in and out as PIL images or numpy arrays, latents as numpy
arrays, every error answer a ``ProblemError``, 503s retried after the server's Retry-After.

    from atnl_client import Client

    with Client("http://127.0.0.1:8000") as atnl:
        z = atnl.encode(["examples/0.png", "examples/5.png"]).latents      # (2, d) float32
        frames = atnl.interpolate("examples/0.png", "examples/5.png", steps=8).frames
"""

from atnl_client.answers import (
    Activation,
    AuthInfo,
    Dataset,
    Decoded,
    Disagreement,
    Encoded,
    HallucinatedImage,
    Hallucination,
    Health,
    Interpolation,
    JobState,
    LatentMap,
    ModelInfo,
    ModelList,
    ReplicaInfo,
    Sample,
    Samples,
    SelfCheck,
)
from atnl_client.async_client import AsyncClient, AsyncJob
from atnl_client.calls import OPERATIONS
from atnl_client.client import Client, Job
from atnl_client.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    ModelMismatch,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ProblemError,
    Unauthorized,
    Unavailable,
)
from atnl_client.retrying import RetryPolicy
from atnl_client.session import VERSION as __version__

__all__ = [
    "OPERATIONS",
    "Activation",
    "AsyncClient",
    "AsyncJob",
    "AuthInfo",
    "Client",
    "Conflict",
    "Dataset",
    "Decoded",
    "Disagreement",
    "Encoded",
    "Forbidden",
    "HallucinatedImage",
    "Hallucination",
    "Health",
    "Interpolation",
    "InvalidInput",
    "Job",
    "JobState",
    "LatentMap",
    "ModelInfo",
    "ModelList",
    "ModelMismatch",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "ProblemError",
    "ReplicaInfo",
    "RetryPolicy",
    "Sample",
    "Samples",
    "SelfCheck",
    "Unauthorized",
    "Unavailable",
    "__version__",
]
