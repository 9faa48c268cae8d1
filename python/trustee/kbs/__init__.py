"""The Key Broker Service core (see `core`): plain requests in, replies out."""

from trustee.kbs.core import Kbs
from trustee.kbs.wire import JSON, Reply, Request, error_reply, token_id

__all__ = ["JSON", "Kbs", "Reply", "Request", "error_reply", "token_id"]
