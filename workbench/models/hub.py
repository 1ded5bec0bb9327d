"""Whether the Hugging Face hub can be reached, answered in seconds rather than after a DNS hang."""

from __future__ import annotations

import os
import socket
import threading

from workbench.errors import OfflineError

HUB_HOST = "huggingface.co"
"""The host whose reachability decides whether the hub is online."""
PROBE_TIMEOUT_S = 3.0
"""How long the reachability probe waits, in seconds (DNS included)."""

OFFLINE_HINT = (
    "Either go online, or use a model folder on disk: save it once with "
    "`AutoModelForCausalLM.from_pretrained(NAME).save_pretrained(DIR)` (and the tokenizer) on a "
    "machine that is online, then pass DIR as the model. The embedded default 'gemma-3-270m' "
    "needs no network."
)
"""What every offline error adds: how to use a model without the hub."""


def offline_by_setting() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Try a TCP connection to the hub; DNS runs in a thread so a hang is cut at ``timeout``."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def require_hub(what: str) -> None:
    """Fail fast when loading ``what`` needs the hub and the hub is out of reach.

    Raises:
        OfflineError: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, or the hub cannot be
            reached within [`PROBE_TIMEOUT_S`][workbench.models.hub.PROBE_TIMEOUT_S]; the message
            says how to work offline.
    """
    if offline_by_setting():
        raise OfflineError(f"Loading {what} needs the Hugging Face hub, but HF_HUB_OFFLINE is set. {OFFLINE_HINT}")
    if not hub_reachable():
        raise OfflineError(
            f"Loading {what} needs the Hugging Face hub, which cannot be reached from this "
            f"machine (no connection to {HUB_HOST} within {PROBE_TIMEOUT_S:.0f} s). {OFFLINE_HINT}"
        )
