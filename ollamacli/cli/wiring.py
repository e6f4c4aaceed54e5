"""Builds the services a command needs, from the environment, at the moment it needs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollamacli.config import Settings

if TYPE_CHECKING:
    from ollamacli.engine.base import EngineFactory
    from ollamacli.service import Services
    from ollamacli.service.models import ModelService


def settings() -> Settings:
    """Settings from the process environment."""
    return Settings.from_env()


def model_service(config: Settings | None = None) -> ModelService:
    """The model service for the configured store (no engine loaded)."""
    from ollamacli.service.models import ModelService
    from ollamacli.store import Store

    config = config or settings()
    return ModelService(Store(config.models))


def services(
    config: Settings | None = None, engine_factory: EngineFactory | None = None
) -> Services:
    """Every service, with the real llama.cpp engine unless another factory is given."""
    from ollamacli.service import build_services

    return build_services(config or settings(), engine_factory)
