"""Ollama Go templates (text/template subset). Placeholder until the engine work lands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ollamacli.engine.base import ChatMessage
from ollamacli.errors import TemplateError


def render_go(
    source: str, messages: Sequence[ChatMessage], *, tools: Sequence[Mapping[str, object]] = ()
) -> str:
    """Render an Ollama Go template."""
    raise TemplateError("Go templates are not supported yet")
