"""Find SMS gateways by name through the entry-point group ``ewarn.sms_gateways``.

A carrier's gateway ships as a separate package that registers a class in
that group (``[project.entry-points."ewarn.sms_gateways"] mycarrier =
"pkg.module:MyGateway"``); ``[alerts] gateway = "mycarrier"`` then selects it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from ewarn.alerts.gateways.base import CONTEXT_KEYS, Gateway, GatewayError
from ewarn.config import AlertSettings

__all__ = ["ENTRY_POINT_GROUP", "available_gateways", "build_gateway", "load_gateway"]

#: The entry-point group gateways register in.
ENTRY_POINT_GROUP = "ewarn.sms_gateways"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_gateways() -> list[str]:
    """Names of the installed gateways, sorted (``console``, ``failover``, ``file``, ...)."""
    return sorted(_entry_points())


def gateway_class(name: str) -> type:
    """The class registered under ``name``.

    Raises
    ------
    GatewayError
        No gateway of that name (lists the available names), or its package
        fails to import.
    """
    eps = _entry_points()
    if name not in eps:
        raise GatewayError(
            f"unknown SMS gateway '{name}' (setting [alerts] gateway or a failover's primary/secondary); "
            f"available: {', '.join(sorted(eps)) or 'none'}; install the package providing it "
            f"(entry point group {ENTRY_POINT_GROUP}) or fix the name in ewarn.toml"
        )
    ep = eps[name]
    try:
        cls = ep.load()
    except Exception as exc:  # a broken third-party package must not crash with a traceback
        raise GatewayError(
            f"SMS gateway '{name}' ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}; "
            "reinstall the package that provides it"
        ) from None
    if not callable(getattr(cls, "from_settings", None)):
        raise GatewayError(f"SMS gateway '{name}' ({ep.value}) has no from_settings(); "
                           "it does not implement ewarn.alerts.gateways.Gateway")
    return cls


def build_gateway(
    name: str,
    tables: Mapping[str, Mapping[str, Any]],
    environ: Mapping[str, str],
    *,
    workspace_root: Path | str | None = None,
    public_url: str = "",
) -> Gateway:
    """Build gateway ``name`` from the ``[alerts.gateways.*]`` tables.

    Parameters
    ----------
    name : str
        Entry-point name.
    tables : mapping
        Options of every gateway, by name (``AlertSettings.gateways``).
    environ : mapping
        Environment holding the credentials.
    workspace_root : path, optional
        Workspace folder, given to gateways that list ``workspace_root`` in
        their ``context_keys``.
    public_url : str
        ``[alerts] public_url``, given to gateways listing ``public_url``.
    """
    cls = gateway_class(name)
    table = tables.get(name, {})
    if not isinstance(table, Mapping):
        raise GatewayError(f"[alerts.gateways.{name}] must be a table of options, got {table!r}")
    options: dict[str, Any] = dict(table)
    context: dict[str, Any] = {
        "workspace_root": None if workspace_root is None else str(workspace_root),
        "public_url": public_url,
        "gateway_tables": {k: dict(v) for k, v in tables.items() if isinstance(v, Mapping)},
    }
    for key in getattr(cls, "context_keys", ("workspace_root",)):
        if key in CONTEXT_KEYS and context[key] not in (None, ""):
            options.setdefault(key, context[key])
    return cls.from_settings(options, environ)


def load_gateway(
    name: str,
    settings: AlertSettings,
    environ: Mapping[str, str] = os.environ,
    workspace_root: Path | str | None = None,
) -> Gateway:
    """The configured gateway ``name`` (usually ``settings.gateway``).

    Options are ``settings.gateways[name]`` plus the context keys the gateway
    asks for (``workspace_root``, ``public_url`` from ``settings.public_url``,
    ``gateway_tables``).

    Raises
    ------
    GatewayError
        Unknown name (the message lists the available ones and names the
        setting ``[alerts] gateway``), bad options (names
        ``[alerts.gateways.NAME] key``) or a missing credential variable.
    """
    return build_gateway(name, settings.gateways, environ,
                         workspace_root=workspace_root, public_url=settings.public_url)
