"""How a google-cloud-compute client is pointed at the simulator (tests and the demo use this).

The REST transport keeps an explicit ``http://`` scheme in ``api_endpoint`` (it only prefixes
``https://`` when none is given), and ``AnonymousCredentials`` sends no token, so no TLS and no
auth set-up is needed. One trap: ``client.insert(...).result()`` polls through a
``ZoneOperationsClient`` the library builds *without* our client options, i.e. against the real
endpoint; call ``insert_unary``-style methods (or use the returned operation's name) and wait
with a ``ZoneOperationsClient`` built here.
"""

from __future__ import annotations

from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials


def client_kwargs(endpoint: str) -> dict[str, Any]:
    """Keyword arguments for any ``compute_v1.*Client``: ``DisksClient(**client_kwargs(sim.endpoint))``."""
    return {
        "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
        "transport": "rest",
        "client_options": ClientOptions(api_endpoint=endpoint),
    }
