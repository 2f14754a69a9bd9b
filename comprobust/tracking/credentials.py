"""Which W&B mode a run uses, and the credentials that decide it (environment, netrc, settings file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from comprobust.errors import UserError

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
_MODE_ALIASES = {
    "online": "online",
    "run": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
    "auto": "auto",
}


def wandb_settings_base_url_and_key() -> tuple[str, str | None]:
    """The base URL and settings-file API key wandb would use (env WANDB_BASE_URL, the settings files)."""
    try:
        from wandb.sdk.wandb_settings import Settings

        settings = Settings()
        config_dir = os.environ.get("WANDB_CONFIG_DIR")
        settings.settings_system = str(
            Path(config_dir).expanduser() / "settings"
            if config_dir
            else Path("~/.config/wandb/settings").expanduser()
        )
        settings.silent = True
        settings.update_from_system_settings()
        settings.update_from_env_vars(dict(os.environ))
        return str(settings.base_url), settings.api_key
    except Exception as err:  # internal wandb API: fall back to the environment alone
        log.debug("could not read wandb settings: %s", err)
        return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"), None


def _netrc_key(base_url: str) -> str | None:
    try:
        from wandb.sdk.lib.wbauth import wbnetrc

        return wbnetrc.read_netrc_auth(host=base_url)
    except Exception as err:  # an unreadable or malformed netrc counts as no credentials
        log.debug("no usable netrc entry for %s: %s", base_url, err)
        return None


def configured_api_keys() -> list[str]:
    """The W&B keys this process could use (env, netrc for the base URL, settings file); never logged."""
    keys = [os.environ.get("WANDB_API_KEY") or ""]
    base_url, settings_key = wandb_settings_base_url_and_key()
    keys += [_netrc_key(base_url) or "", settings_key or ""]
    return [key for key in dict.fromkeys(keys) if key]


def has_credentials() -> bool:
    """True when an API key (or an identity token file) is configured for the W&B base URL."""
    return bool(os.environ.get("WANDB_IDENTITY_TOKEN_FILE") or configured_api_keys())


def resolve_mode(requested: str = "auto", override: str | None = None) -> str:
    """The W&B mode to run in: "online", "offline" or "disabled".

    `override` (a command-line `--mode`) wins over the environment variable WANDB_MODE, which wins over
    `requested` (the experiment's wandb.mode). "auto" means online only when credentials are configured, else
    offline. "online" without credentials is a `UserError`.
    """
    if override:
        source, raw = "--mode", override.strip().lower()
    else:
        source = "WANDB_MODE" if os.environ.get("WANDB_MODE") else "the requested mode"
        raw = (os.environ.get("WANDB_MODE") or requested or "auto").strip().lower()
    mode = _MODE_ALIASES.get(raw)
    if mode is None:
        raise UserError(f"{source} is {raw!r}: use one of auto, online, offline, disabled")
    if mode == "auto":
        return "online" if has_credentials() else "offline"
    if mode == "online" and not has_credentials():
        base_url, _ = wandb_settings_base_url_and_key()
        raise UserError(
            f"{source} asks for W&B online mode, but no W&B credentials are configured for {base_url}: "
            "run `wandb login` (or export WANDB_API_KEY, and WANDB_BASE_URL for a self-hosted server), "
            "or use mode offline and publish the runs later with `wandb sync`"
        )
    return mode
