"""What the routes share through the application object: the services, running requests and,
under `serve --ray`, the other replicas."""

from __future__ import annotations

from starlette.requests import Request

from ollamacli.server.peers import Peers
from ollamacli.server.streaming import ActiveRequests
from ollamacli.service import Services


def services_of(request: Request) -> Services:
    """The services the app was created with."""
    services = request.app.state.services
    if not isinstance(services, Services):
        raise TypeError("create the app with create_app(services)")
    return services


def active_of(request: Request) -> ActiveRequests:
    """The registry of running generations (shutdown cancels them)."""
    active = request.app.state.active
    if not isinstance(active, ActiveRequests):
        raise TypeError("create the app with create_app(services)")
    return active


def peers_of(request: Request) -> Peers | None:
    """The other servers of this deployment (`serve --ray`'s replicas), or None alone."""
    peers: Peers | None = request.app.state.peers
    return peers
