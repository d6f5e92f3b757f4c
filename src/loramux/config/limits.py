"""Config sections that keep the server up under load: `limits` and `supervisor`."""

from __future__ import annotations

from pydantic import Field

from loramux.config.strict import Strict


class LimitsSettings(Strict):
    """Request limits and the admission queue in front of the engine (`limits:`)."""

    max_messages: int = Field(default=256, ge=1, le=100_000)
    """Most messages in one chat or route request; more get HTTP 400 (`param: messages`)."""
    max_message_chars: int = Field(default=100_000, ge=1)
    """Longest message content (or completions prompt) in characters; longer gets HTTP 400."""
    max_embedding_inputs: int = Field(default=256, ge=1, le=100_000)
    """Most texts in one `/v1/embeddings` request; more get HTTP 400 (`param: input`)."""
    max_in_flight: int | None = Field(default=None, ge=1, le=100_000)
    """Generations handed to the engine at once. Default: twice `engine.max_batch_size`, at
    least 64, so the engine's batches fill and it holds the next requests ready to join them
    (a value under `engine.max_batch_size` caps every batch at that size: a warning says so)."""
    max_queued: int = Field(default=256, ge=0, le=1_000_000)
    """Requests waiting for a generation slot; when this many wait, new requests get HTTP 503
    `server_overloaded` with `Retry-After` at once instead of growing latency."""
    queue_timeout_s: float = Field(default=30.0, gt=0)
    """Longest wait for a generation slot before HTTP 503 `server_overloaded`."""
    request_timeout_s: float = Field(default=300.0, gt=0)
    """Longest generation, from its slot to its last token; past it the generation is cancelled
    and the client gets HTTP 504 `request_timeout` (a stream: an error event, then `[DONE]`)."""
    retry_after_s: int = Field(default=1, ge=1, le=3600)
    """`Retry-After` sent with `server_overloaded` and `shutting_down` 503s."""
    fair_share: bool = True
    """Share the generation slots and the queue between tenants (departments; a key without
    one is its own tenant), weighted by each key's `weight`: a free slot goes to the waiting
    tenant served the fewest weighted tokens (Virtual Token Counter, OSDI 2024), and a full queue
    refuses the newest request of the tenant holding most of it. Off: one FIFO line for all."""
    max_queued_per_tenant: int | None = Field(default=None, ge=0, le=1_000_000)
    """With `fair_share`: most requests one tenant may have waiting (more get HTTP 503 at
    once); None: only `max_queued` bounds them."""


class SupervisorSettings(Strict):
    """The watchdog that restarts a failed or hung engine (`supervisor:`)."""

    enabled: bool = True
    """Watch the engine and restart it on failure; off: a failed engine stays down (503)."""
    probe_interval_s: float = Field(default=1.0, gt=0, le=60)
    """How often the engine's readiness and progress are checked."""
    hang_timeout_s: float = Field(default=120.0, gt=0)
    """An engine that produced no token for this long while requests waited on it is hung: it
    is restarted and those requests fail. Allow for the longest prefill of a full batch."""
    stop_timeout_s: float = Field(default=10.0, gt=0)
    """How long a failed engine may take to stop before it is abandoned."""
    start_timeout_s: float = Field(default=600.0, gt=0)
    """How long a restarted engine may take to load before the attempt counts as failed."""
    backoff_s: float = Field(default=1.0, gt=0)
    """Wait before the second restart attempt; doubled after each failed attempt."""
    max_backoff_s: float = Field(default=60.0, gt=0)
    """Longest wait between restart attempts."""
    retry_after_s: int = Field(default=5, ge=1, le=3600)
    """`Retry-After` sent with the 503s of an engine that is restarting."""
