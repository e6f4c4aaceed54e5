"""Hugging Face as a model source: list a repo's GGUF files, pick one by quantisation, locate it.

The only module that imports huggingface_hub, and only inside functions. The endpoint comes
from `Settings.hf_endpoint` and is passed explicitly to every call, because huggingface_hub
reads `HF_ENDPOINT` once, at import time. The bytes themselves are fetched by
`registry.transfer` (parallel ranges, resume, verification against the file's LFS sha256).

Which file `hf.co/<user>/<repo>[:<quant>]` means (`select_gguf`):

- Candidates are the repo's `.gguf` files, minus multimodal projectors (`mmproj`) and split
  shards (`-00001-of-00003.gguf`), which a single model layer cannot hold.
- With a tag, the file whose name has the tag as a `-`/`.`-separated part, compared
  case-insensitively (`:q4_k_m` finds `Model-Q4_K_M.gguf`); the tag may also be the whole file
  name. Several matches: the one whose name ends with the tag, then the shortest name.
- Without a tag (`latest`): the only GGUF if there is one; else the first quantisation present
  in `QUANT_PREFERENCE` (Q4_K_M first, as Ollama and Hugging Face do); else the smallest file.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import httpx

from ollamacli import __version__
from ollamacli.errors import DownloadError, ManifestNotFoundError, RegistryError
from ollamacli.store.blobs import Digest

QUANT_PREFERENCE: Final = (
    "Q4_K_M",
    "Q4_K_S",
    "Q4_0",
    "Q4_1",
    "IQ4_XS",
    "IQ4_NL",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_0",
    "Q5_1",
    "Q6_K",
    "Q8_0",
    "Q3_K_M",
    "Q3_K_L",
    "Q3_K_S",
    "Q2_K",
    "BF16",
    "F16",
    "F32",
)
"""The default pick when a repo has several GGUF files and the name has no tag."""

_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class HubFile:
    """A file in a Hugging Face repo: its path, size and (for LFS files) sha256 hex."""

    path: str
    size: int
    sha256: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class HubDownload:
    """Where a chosen file's bytes are, pinned to a commit, and how to verify them."""

    url: str
    file: HubFile
    size: int
    digest: Digest | None
    commit: str | None


def _parts(filename: str) -> list[str]:
    stem = filename.rsplit("/", 1)[-1]
    if stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    return [part.lower() for part in re.split(r"[-.]", stem) if part]


def quant_label(filename: str) -> str:
    """The quantisation a GGUF file name announces: its last `-`/`.` part, upper-cased."""
    parts = _parts(filename)
    return parts[-1].upper() if parts else filename


def gguf_candidates(files: Sequence[HubFile]) -> list[HubFile]:
    """The single-file GGUF models of a repo (no projectors, no split shards)."""
    return [
        file
        for file in files
        if file.name.lower().endswith(".gguf")
        and "mmproj" not in file.name.lower()
        and not _SPLIT.search(file.name)
    ]


def select_gguf(files: Sequence[HubFile], quant: str | None, *, repo: str) -> HubFile:
    """Pick the GGUF a tag means (see the module docstring); errors list what is there."""
    candidates = gguf_candidates(files)
    if not candidates:
        raise _no_gguf(files, repo)
    if quant is None:
        return _default_pick(candidates)
    wanted = quant.lower()
    matches = [
        file
        for file in candidates
        if wanted in _parts(file.name) or file.name.lower() in (wanted, wanted + ".gguf")
    ]
    if not matches:
        available = ", ".join(sorted({quant_label(file.name) for file in candidates}))
        raise ManifestNotFoundError(
            f'no GGUF file for "{quant}" in {repo}; available: {available}',
            hint=f"pull one of them, e.g. 'ollamacli pull {repo}:{quant_label(candidates[0].name)}'",
        )
    return min(matches, key=lambda f: (_parts(f.name)[-1:] != [wanted], len(f.name), f.name))


def _default_pick(candidates: list[HubFile]) -> HubFile:
    if len(candidates) == 1:
        return candidates[0]
    for quant in QUANT_PREFERENCE:
        found = [file for file in candidates if quant.lower() in _parts(file.name)]
        if found:
            return min(found, key=lambda f: (len(f.name), f.name))
    return min(candidates, key=lambda f: (f.size, f.name))


def _no_gguf(files: Sequence[HubFile], repo: str) -> ManifestNotFoundError:
    names = sorted(file.path for file in files)
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    split = any(_SPLIT.search(name) for name in names)
    what = "only split GGUF files, which are not supported" if split else "no GGUF files"
    return ManifestNotFoundError(
        f"{repo} has {what}; files: {shown or 'none'}",
        hint="ollamacli runs single-file GGUF models; look for a '-GGUF' repository",
    )


class HubAuth(httpx.Auth):
    """Sends the Hugging Face token to the Hub endpoint only, never to the CDN it redirects to."""

    def __init__(self, endpoint: str, token: str) -> None:
        url = httpx.URL(endpoint)
        self._origin = (url.scheme, url.host, url.port)
        self._token = token

    def headers_for(self, url: str) -> dict[str, str]:
        """The Authorization header for a URL of the Hub endpoint (none for a CDN)."""
        parsed = httpx.URL(url)
        if (parsed.scheme, parsed.host, parsed.port) == self._origin:
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self.headers_for(str(request.url)))
        yield request


class HuggingFaceHub:
    """The Hub API at one endpoint, through huggingface_hub."""

    def __init__(self, endpoint: str, token: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token

    def auth(self) -> HubAuth | None:
        """Auth for downloading files (None without a token)."""
        return HubAuth(self.endpoint, self.token) if self.token else None

    def auth_headers(self, url: str) -> dict[str, str]:
        """The Authorization header for a URL of this endpoint (none without a token)."""
        auth = self.auth()
        return auth.headers_for(url) if auth else {}

    def list_files(self, repo_id: str) -> list[HubFile]:
        """Every file of the repo's main revision, with sizes and LFS sha256."""
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(
            endpoint=self.endpoint,
            token=self.token or False,  # False: never read a token from disk or the environment
            library_name="ollamacli",
            library_version=__version__,
        )
        with self._errors(repo_id):
            entries = list(api.list_repo_tree(repo_id, recursive=True))
        return [
            HubFile(entry.path, entry.size, entry.lfs.sha256 if entry.lfs else None)
            for entry in entries
            if isinstance(entry, RepoFile)
        ]

    def locate(self, repo_id: str, file: HubFile) -> HubDownload:
        """The file's download URL pinned to the current commit, its size and digest."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo_id, file.path, endpoint=self.endpoint)
        with self._errors(repo_id):
            meta = get_hf_file_metadata(
                url,
                token=self.token or False,
                endpoint=self.endpoint,
                library_name="ollamacli",
                library_version=__version__,
            )
        commit = meta.commit_hash
        if commit:
            url = hf_hub_url(repo_id, file.path, revision=commit, endpoint=self.endpoint)
        etag = (meta.etag or "").lower()
        sha256 = file.sha256 or (etag if _SHA256.fullmatch(etag) else None)
        size = meta.size if meta.size is not None else file.size
        digest = Digest(f"sha256:{sha256.lower()}") if sha256 else None
        return HubDownload(url=url, file=file, size=size, digest=digest, commit=commit)

    @contextmanager
    def _errors(self, repo_id: str) -> Iterator[None]:
        """Translate huggingface_hub's exceptions into ollamacli's."""
        from huggingface_hub import errors

        repo = f"hf.co/{repo_id}"
        try:
            yield
        except errors.GatedRepoError as exc:
            raise RegistryError(
                f"{repo} is gated: accept its conditions on Hugging Face first",
                url=self.endpoint,
                hint="then set HF_TOKEN to a token of that account",
            ) from exc
        except (
            errors.RepositoryNotFoundError,
            errors.RevisionNotFoundError,
            errors.RemoteEntryNotFoundError,
        ) as exc:
            raise ManifestNotFoundError(
                "pull model manifest: file does not exist",
                url=self.endpoint,
                status=404,
                hint=f"no repository '{repo_id}' on {self.endpoint} (a private one needs HF_TOKEN)",
            ) from exc
        except errors.HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            raise RegistryError(
                f"hugging face: {exc}".splitlines()[0], url=self.endpoint, status=status
            ) from exc
        except _network_errors() as exc:
            raise DownloadError(
                f"cannot reach {self.endpoint}: {exc}",
                url=self.endpoint,
                hint="check the network connection (and HF_ENDPOINT)",
            ) from exc


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of the HTTP library huggingface_hub uses (httpx2 since 2.x)."""
    found: list[type[BaseException]] = [httpx.TransportError, ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import httpx2

        found.append(httpx2.TransportError)
    return tuple(found)
