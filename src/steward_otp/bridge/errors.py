"""The bridge's errors: its own exceptions, and the broker's errors it tells the operator of.

* :class:`BridgeClosed` is how the bridge process ends when nats-py closes the connection
  for good, for its supervisor to restart it; :func:`sole_exception` unwraps the one error
  that ended the bridge from trio-asyncio's nursery.
* :class:`BrokerRefusals` reports the errors nats-py passes to its error callback. A
  refusal by the broker (credentials, TLS, permissions) is nothing a retry fixes: it is
  logged as a warning with a hint at the settings to check, at most once a minute per
  distinct error text. Every other error is logged at debug level only.
"""

from __future__ import annotations

import logging
import math
import re
import ssl
import time

from steward_otp.bridge.settings import BridgeSettings
from steward_otp.supervisors.errors import leaf_exceptions
from steward_otp.transport import TransportError

# Every module of the bridge logs under the bridge's one name.
log = logging.getLogger("steward_otp.bridge")

REFUSAL = re.compile(r"authori[sz]ation|authentication|permissions violation", re.IGNORECASE)
"""Errors from the broker that mean it refuses this node or one of its operations."""

REFUSAL_LOG_INTERVAL = 60.0
"""Seconds between two warnings about the same refusal."""


class BridgeError(TransportError):
    """Base class of the bridge's own errors."""


class BridgeClosed(BridgeError):
    """The connection to the broker was closed for good; the bridge process crashes with it."""


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single leaf exception of ``group``, or the group itself when there are several."""
    leaves = leaf_exceptions(group)
    return leaves[0] if len(leaves) == 1 else group


class BrokerRefusals:
    """Tells the operator, sparingly, of the broker refusing one bridge's connection."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self._logged: dict[str, float] = {}

    def report(self, exc: Exception) -> None:
        """Log one error nats-py reported: a refusal as a warning with a hint, else debug."""
        text = str(exc) or type(exc).__name__
        if isinstance(exc, ssl.SSLError):
            hint = "check root_ca_path, tls_cert_file and tls_key_file against the broker's tls"
        elif REFUSAL.search(text) is not None:
            hint = (
                "check nkey_seed_file or nats_creds_file and the broker's users, accounts "
                "and permissions, e.g. from steward-otp broker-config"
            )
        else:
            log.debug("bridge %s: nats error: %r", self.settings.name, exc)
            return
        # The broker refused this node (credentials, TLS) or one of its operations
        # (permissions): nothing a retry fixes, so the operator hears of it, once a minute
        # per kind.
        now = time.monotonic()
        if now - self._logged.get(text, -math.inf) >= REFUSAL_LOG_INTERVAL:
            self._logged[text] = now
            log.warning(
                "bridge %s: the broker %s refused: %s (%s)",
                self.settings.name,
                self.settings.url,
                text,
                hint,
            )
