"""Talking to a W&B server at all: which URL, whether it answers, and what its errors mean.

wandb itself waits 90 s for an unreachable server and then raises a `CommError` traceback; every online command
(a stage run, `report`, `publish`, `sweep`) first calls `require_reachable`, which answers within
`REACHABLE_TIMEOUT_S` with one line naming the URL and the offline remedy.
"""

from __future__ import annotations

import functools
import re
import urllib.error
import urllib.request

from comprobust.errors import UserError

DEFAULT_BASE_URL = "https://api.wandb.ai"
REACHABLE_TIMEOUT_S = 10.0
_NOT_FOUND_RE = re.compile(r"not found|does not exist|could not find|no such|404", re.IGNORECASE)


def base_url() -> str:
    """The server wandb will talk to: WANDB_BASE_URL, else the settings file's, else the hosted one."""
    from comprobust.tracking.credentials import wandb_settings_base_url_and_key

    return wandb_settings_base_url_and_key()[0].rstrip("/") or DEFAULT_BASE_URL


@functools.lru_cache(maxsize=8)
def _probe(url: str, timeout_s: float) -> str | None:
    """None when `url` answers HTTP at all (any status), else the reason it did not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None  # the server answered: reachable, whatever it thinks of this request
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason


def require_reachable(what: str, url: str | None = None, timeout_s: float = REACHABLE_TIMEOUT_S) -> str:
    """Return the base URL after checking that it answers; a one-line `UserError` naming it otherwise.

    `what` names the command that needs the server (e.g. "stage erm"); the message offers `--mode offline`.
    """
    url = (url or base_url()).rstrip("/")
    reason = _probe(url, timeout_s)
    if reason is not None:
        _probe.cache_clear()  # a later call may find the server back
        raise UserError(
            f"{what}: the W&B server {url} does not answer ({reason}); check WANDB_BASE_URL and the network, "
            "or run with --mode offline (WANDB_MODE=offline) and `launch.py publish` the runs later"
        )
    return url


def is_not_found(err: BaseException) -> bool:
    """True when a wandb error says the thing asked for does not exist (as opposed to a network or server
    failure, which must not be reported as "run stage X first")."""
    return bool(_NOT_FOUND_RE.search(str(err)))
