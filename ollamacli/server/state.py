"""What the routes share through the application object: the services and running requests."""

from __future__ import annotations

from starlette.requests import Request

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
