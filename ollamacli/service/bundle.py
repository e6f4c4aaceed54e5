"""Export a model to one file (or stream) and import it on another machine.

The format and its checks live in `store.bundle`; this module adds the file handling: an
export to a path is written beside it and renamed into place when complete, so a failed or
interrupted export never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from ollamacli.errors import StoreError
from ollamacli.names import ModelName
from ollamacli.store import Store
from ollamacli.store.bundle import BundleSummary, export_model, import_model


class BundleService:
    """`export` and `import` for one store."""

    def __init__(self, store: Store, *, prune: bool = True) -> None:
        self.store = store
        self.prune = prune

    def export_stream(self, model: str, out: IO[bytes]) -> BundleSummary:
        """Write the model as a tar stream (see `store.bundle`)."""
        return export_model(self.store, ModelName.parse(model), out)

    def export_file(self, model: str, path: Path) -> BundleSummary:
        """Write the model to `path`, atomically."""
        name = ModelName.parse(model)
        self.store.manifests.get(name)  # an unknown model fails before any file is created
        temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with temp.open("wb") as out:
                summary = export_model(self.store, name, out)
            temp.replace(path)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        return summary

    def import_stream(self, source: IO[bytes]) -> BundleSummary:
        """Store the models of an export stream; nothing is stored unless all of it checks out."""
        return import_model(self.store, source, prune=self.prune)

    def import_file(self, path: Path) -> BundleSummary:
        """Store the models of an export file."""
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
        with handle:
            return self.import_stream(handle)
