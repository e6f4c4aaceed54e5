"""The local model store: content-addressed blobs plus Ollama-format manifests."""

from ollamacli.store.blobs import BlobStore, Digest, digest_filename, parse_digest
from ollamacli.store.catalog import ResolvedModel, Store
from ollamacli.store.manifests import Layer, Manifest, ManifestEntry, ManifestStore

__all__ = [
    "BlobStore",
    "Digest",
    "Layer",
    "Manifest",
    "ManifestEntry",
    "ManifestStore",
    "ResolvedModel",
    "Store",
    "digest_filename",
    "parse_digest",
]
