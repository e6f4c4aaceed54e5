"""Builds the services a command needs, from the environment, at the moment it needs them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ollamacli.config import Settings

if TYPE_CHECKING:
    from ollamacli.engine.base import EngineFactory
    from ollamacli.names import ModelName
    from ollamacli.progress import ProgressSink
    from ollamacli.service import Services
    from ollamacli.service.models import Fetcher, ModelService
    from ollamacli.service.pull import PullService
    from ollamacli.service.push import PushService


def settings() -> Settings:
    """Settings from the process environment."""
    return Settings.from_env()


def model_service(config: Settings | None = None) -> ModelService:
    """The model service for the configured store (no engine loaded)."""
    from ollamacli.service.models import ModelService
    from ollamacli.store import Store

    config = config or settings()
    return ModelService(
        Store(config.models),
        fetcher=pull_fetcher(config),
        adapter_converter=convert_adapter,
        prune=not config.noprune,
    )


def services(
    config: Settings | None = None, engine_factory: EngineFactory | None = None
) -> Services:
    """Every service, with the real llama.cpp engine unless another factory is given."""
    from ollamacli.service import build_services

    config = config or settings()
    return build_services(
        config, engine_factory, fetcher=pull_fetcher(config), adapter_converter=convert_adapter
    )


def pull_service(config: Settings | None = None) -> PullService:
    """The pull use case for the configured store."""
    from ollamacli.service.pull import PullService
    from ollamacli.store import Store

    config = config or settings()
    return PullService(Store(config.models), config)


def push_service(config: Settings | None = None) -> PushService:
    """The push use case for the configured store."""
    from ollamacli.service.push import PushService
    from ollamacli.store import Store

    config = config or settings()
    return PushService(Store(config.models), config)


def pull_fetcher(config: Settings) -> Fetcher:
    """Lets `run` and `create FROM` pull a missing model; imports the pull code only if used."""

    def fetch(name: ModelName, progress: ProgressSink) -> None:
        pull_service(config).pull(name, progress)

    return fetch


def convert_adapter(folder: Path, base_model: Path) -> Path:
    """ADAPTER with a PEFT folder: convert it to a GGUF LoRA (imports the finetune code if used)."""
    from ollamacli.finetune.export import convert_to_temporary

    return convert_to_temporary(folder, base_model)
