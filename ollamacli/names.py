"""Model names: `[scheme://][host/][namespace/]model[:tag]`, parsed and validated as Ollama does.

Defaults are host `registry.ollama.ai`, namespace `library`, tag `latest`. Parsing rejects
anything that could escape the store (`..`, empty parts, absolute paths) before a file is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ollamacli.errors import InvalidModelNameError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
HF_HOSTS = ("hf.co", "huggingface.co")

# Ollama's per-part limits (types/model/name.go isValidLen): host 1-350, the others 1-80.
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_MODEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
NAME_MAX = 255
"""Each part is a folder or file name under `manifests/`, which file systems cap at 255
bytes: a longer host (Ollama allows 350) could be parsed but never stored."""


@dataclass(frozen=True, slots=True)
class ModelName:
    """A fully qualified model name. Compare with `key` for Ollama's case-insensitive matching."""

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = "https"

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse and validate a name, filling in defaults; raises `InvalidModelNameError`."""
        raw = text
        text = text.strip()
        scheme = "https"
        for prefix in ("https://", "http://"):
            if text.startswith(prefix):
                scheme, text = prefix[:-3], text[len(prefix) :]
                break
        tag = DEFAULT_TAG
        colon, slash = text.rfind(":"), text.rfind("/")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
        parts = text.split("/")
        if len(parts) > 3:
            parts = ["/".join(parts[:-2]), parts[-2], parts[-1]]
        while len(parts) < 3:
            parts.insert(0, DEFAULT_NAMESPACE if len(parts) == 1 else DEFAULT_HOST)
        name = cls(host=parts[0], namespace=parts[1], model=parts[2], tag=tag, scheme=scheme)
        name._validate(raw)
        return name

    def _validate(self, raw: str) -> None:
        checks = (
            (_HOST, self.host, "host"),
            (_NAMESPACE, self.namespace, "namespace"),
            (_MODEL, self.model, "model"),
            (_TAG, self.tag, "tag"),
        )
        for pattern, part, label in checks:
            if not part:
                raise InvalidModelNameError(_clip(raw), reason=f"empty {label}")
            limit = min(_LIMITS[label], NAME_MAX)
            if len(part) > limit:
                raise InvalidModelNameError(
                    _clip(raw), reason=f"{label} is {len(part)} characters long (at most {limit})"
                )
            if not pattern.fullmatch(part):
                raise InvalidModelNameError(
                    _clip(raw), reason=f"bad characters in {label} {_clip(part)!r}"
                )
        if ".." in self.host:
            raise InvalidModelNameError(_clip(raw), reason="'..' is not allowed")

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The case-folded identity used for matching, as Ollama matches names."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """Host, namespace, model, tag: the manifest path under `manifests/`."""
        return (self.host, self.namespace, self.model, self.tag)

    @property
    def is_huggingface(self) -> bool:
        """True for `hf.co/<user>/<repo>` and `huggingface.co/<user>/<repo>` names."""
        return self.host.lower() in HF_HOSTS

    @property
    def short(self) -> str:
        """Ollama's DisplayShortest: drop the default host and namespace, keep the tag."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def full(self) -> str:
        """`host/namespace/model:tag`."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def repository(self) -> str:
        """`namespace/model`, the registry repository path."""
        return f"{self.namespace}/{self.model}"

    def with_tag(self, tag: str) -> ModelName:
        """The same model with another tag."""
        return ModelName.parse(f"{self.scheme}://{self.host}/{self.namespace}/{self.model}:{tag}")

    def __str__(self) -> str:
        return self.short


def _clip(text: str, size: int = 60) -> str:
    """A long name shortened for an error message."""
    return text if len(text) <= size else f"{text[: size // 2]}...{text[-size // 4 :]}"


def parse_name(text: str) -> ModelName:
    """Shorthand for `ModelName.parse`."""
    return ModelName.parse(text)
