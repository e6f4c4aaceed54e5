"""The views that span every server of one deployment: `/api/ps` and `/metrics` under `serve --ray`.

Behind `serve --ray` several model-server replicas answer the same API, each with its own
scheduler and metrics registry, and a request goes to whichever replica Serve picks. So that
`/api/ps` and `/metrics` answer for the whole deployment, as they do for one plain `serve`, each
replica publishes a `Snapshot` of its loaded models and metric families, and the replica that
takes the request adds the other replicas' latest snapshots (`Peers`) to its own, fresh, view.
Nothing here imports Ray: `server/cluster.py` carries the snapshots; the tests use plain objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

# The label that tells replicas' series apart in the merged `/metrics`.
REPLICA_LABEL = "replica"

# One metric sample, as plain values: (sample name, labels, value).
SampleValues = tuple[str, tuple[tuple[str, str], ...], float]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family as plain values (what crosses process boundaries)."""

    name: str
    documentation: str
    type: str
    unit: str
    samples: tuple[SampleValues, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one server reports of itself: its `/api/ps` entries and its metric families."""

    server: str
    models: tuple[dict[str, object], ...]
    families: tuple[Family, ...]


class Peers(Protocol):
    """The other servers of a deployment, as last reported."""

    @property
    def name(self) -> str:
        """This server's own name (its `replica` label value)."""
        ...

    async def snapshots(self) -> list[Snapshot]:
        """The latest snapshot of every other live server."""
        ...


def families_of(registry: CollectorRegistry) -> tuple[Family, ...]:
    """A registry's families, collected now, as plain values."""
    return tuple(
        Family(
            metric.name,
            metric.documentation,
            metric.type,
            metric.unit,
            tuple((s.name, tuple(sorted(s.labels.items())), s.value) for s in metric.samples),
        )
        for metric in registry.collect()
    )


def merged_models(
    own: Sequence[dict[str, object]], peers: Iterable[Snapshot]
) -> list[dict[str, object]]:
    """`/api/ps` of the deployment: this server's models, then the others' it does not hold.

    A model loaded on two replicas is one row (this server's, or the first peer's), as `ps` of
    one server shows one row per model.
    """
    models = list(own)
    seen = {model.get("name") for model in models}
    for snapshot in sorted(peers, key=lambda s: s.server):
        for model in snapshot.models:
            if model.get("name") not in seen:
                seen.add(model.get("name"))
                models.append(model)
    return models


class _Merged(Collector):
    """Every server's families, each sample labelled with its server."""

    def __init__(self, snapshots: Sequence[Snapshot]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for snapshot in self.snapshots:
            for family in snapshot.families:
                metric = merged.get(family.name)
                if metric is None:
                    metric = Metric(family.name, family.documentation, family.type, family.unit)
                    merged[family.name] = metric
                for name, labels, value in family.samples:
                    tagged = {**dict(labels), REPLICA_LABEL: snapshot.server}
                    metric.add_sample(name, tagged, value)
        yield from merged.values()


def merged_metrics(own: Snapshot, peers: Iterable[Snapshot]) -> bytes:
    """`/metrics` of the deployment: every server's series with a `replica` label."""
    snapshots = [own, *sorted(peers, key=lambda s: s.server)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(snapshots))
    return generate_latest(registry)
