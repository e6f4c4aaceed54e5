"""Hugging Face pulls: GGUF/quant selection (pure) and end to end against a local Hub endpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.errors import ManifestNotFoundError
from ollamacli.registry.hf import HubFile, HuggingFaceHub, quant_label, select_gguf
from ollamacli.service.pull import PullService
from ollamacli.store import Store
from ollamacli.store.manifests import MEDIA_MODEL
from tests.factories import CHATML, make_tiny_gguf
from tests.registry.conftest import FAST, Events
from tests.servers.hub import HubServer

REPO = "hf.co/user/Model-GGUF"


def _files(*names: str, size: int = 100) -> list[HubFile]:
    return [HubFile(name, size + index) for index, name in enumerate(names)]


COMMON = _files(
    "README.md",
    "Model-Q2_K.gguf",
    "Model-Q4_K_M.gguf",
    "Model-Q4_K_S.gguf",
    "Model-Q8_0.gguf",
    "Model-F16.gguf",
    "mmproj-Model-F16.gguf",
)


@pytest.mark.parametrize(
    ("quant", "expected"),
    [
        (None, "Model-Q4_K_M.gguf"),
        ("Q8_0", "Model-Q8_0.gguf"),
        ("q8_0", "Model-Q8_0.gguf"),
        ("q4_k_s", "Model-Q4_K_S.gguf"),
        ("f16", "Model-F16.gguf"),
        ("Model-Q2_K.gguf", "Model-Q2_K.gguf"),
    ],
    ids=["default", "exact", "lowercase", "k-variant", "float", "filename"],
)
def test_select_gguf_matches_quant_case_insensitively(quant, expected):
    assert select_gguf(COMMON, quant, repo=REPO).path == expected


def test_select_gguf_default_follows_the_preference_order():
    files = _files("m.Q8_0.gguf", "m.Q5_K_M.gguf", "m.Q4_0.gguf")
    assert select_gguf(files, None, repo=REPO).path == "m.Q4_0.gguf"
    files = _files("m.Q8_0.gguf", "m.F16.gguf")
    assert select_gguf(files, None, repo=REPO).path == "m.Q8_0.gguf"


def test_select_gguf_single_file_is_the_default_whatever_its_name():
    files = _files("README.md", "weights.gguf")
    assert select_gguf(files, None, repo=REPO).path == "weights.gguf"


def test_select_gguf_unknown_names_default_to_the_smallest_file():
    files = [HubFile("big-model.gguf", 900), HubFile("small-model.gguf", 100)]
    assert select_gguf(files, None, repo=REPO).path == "small-model.gguf"


def test_select_gguf_prefers_a_file_ending_with_the_tag():
    files = _files("Model-Q4_K_M-imatrix-v2.gguf", "Model-Q4_K_M.gguf")
    assert select_gguf(files, "Q4_K_M", repo=REPO).path == "Model-Q4_K_M.gguf"


def test_select_gguf_ignores_projectors_and_split_shards():
    files = _files(
        "mmproj-Model-Q4_K_M.gguf", "Model-Q4_K_M-00001-of-00002.gguf", "Model-Q8_0.gguf"
    )
    assert select_gguf(files, None, repo=REPO).path == "Model-Q8_0.gguf"


def test_select_gguf_missing_quant_lists_what_is_available():
    with pytest.raises(ManifestNotFoundError) as caught:
        select_gguf(COMMON, "Q3_K_L", repo=REPO)
    assert str(caught.value) == (
        f'no GGUF file for "Q3_K_L" in {REPO}; available: F16, Q2_K, Q4_K_M, Q4_K_S, Q8_0'
    )


def test_select_gguf_repo_without_gguf_lists_its_files():
    with pytest.raises(ManifestNotFoundError) as caught:
        select_gguf(_files("config.json", "model.safetensors"), None, repo=REPO)
    assert str(caught.value) == f"{REPO} has no GGUF files; files: config.json, model.safetensors"
    with pytest.raises(ManifestNotFoundError, match="only split GGUF"):
        select_gguf(_files("m-00001-of-00002.gguf", "m-00002-of-00002.gguf"), None, repo=REPO)


def test_quant_label_is_the_last_name_part():
    assert quant_label("SmolLM2-135M-Instruct.Q4_1.gguf") == "Q4_1"
    assert quant_label("dir/model-q4_k_m.gguf") == "Q4_K_M"


@pytest.fixture
def hf_pulls(store: Store, hub: HubServer) -> PullService:
    return PullService(store, Settings(models_dir=store.root, hf_endpoint=hub.url), options=FAST)


def test_hub_lists_files_with_sizes_and_lfs_sha256(hub: HubServer, hub_repo: dict[str, Path]):
    files = {f.path: f for f in HuggingFaceHub(hub.url).list_files("user/Tiny-GGUF")}
    assert set(files) == {"Tiny-Q4_K_M.gguf", "Tiny-Q8_0.gguf", "README.md", "config.json"}
    assert files["Tiny-Q8_0.gguf"].size == hub_repo["Q8_0"].stat().st_size
    assert files["Tiny-Q8_0.gguf"].sha256 is not None
    assert files["README.md"].sha256 is None


def test_hf_pull_default_picks_q4_k_m_and_builds_model_from_gguf(
    hf_pulls: PullService, store: Store, hub_repo: dict[str, Path], events: Events
):
    name = hf_pulls.pull("hf.co/user/Tiny-GGUF", events)

    assert (store.root / "manifests" / "hf.co" / "user" / "Tiny-GGUF" / "latest").is_file()
    resolved = store.resolve(name)
    assert resolved.model_path.read_bytes() == hub_repo["Q4_K_M"].read_bytes()
    assert resolved.config["file_type"] == "Q4_K_M"
    assert resolved.config["model_family"] == "llama"
    assert resolved.template is None  # the engine uses the GGUF's own chat template
    [layer] = resolved.manifest.layers
    assert layer.media_type == MEDIA_MODEL
    assert events.statuses == [
        "pulling manifest",
        f"pulling {layer.digest.split(':')[1][:12]}",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]


def test_hf_pull_with_quant_tag_stores_under_that_tag(
    hf_pulls: PullService, store: Store, hub_repo: dict[str, Path]
):
    name = hf_pulls.pull("huggingface.co/user/Tiny-GGUF:q8_0")

    assert (store.root / "manifests" / "huggingface.co" / "user" / "Tiny-GGUF" / "q8_0").is_file()
    assert store.resolve(name).model_path.read_bytes() == hub_repo["Q8_0"].read_bytes()
    assert store.resolve(name).config["file_type"] == "Q8_0"


def test_hf_pull_downloads_big_files_in_ranges_from_the_cdn(
    hub: HubServer, hf_pulls: PullService, store: Store, tmp_path: Path
):
    path = tmp_path / "big.gguf"
    path.write_bytes(make_tiny_gguf(tmp_path / "t.gguf").read_bytes() + os.urandom(600_000))
    hub.app.add_file("user/Big-GGUF", "big-Q4_K_M.gguf", path)

    name = hf_pulls.pull("hf.co/user/Big-GGUF:Q4_K_M")

    assert store.resolve(name).model_path.read_bytes() == path.read_bytes()
    cdn = [r for r in hub.app.requests if r.path.startswith("/lfs/")]
    assert len(cdn) > 2  # probe plus several parts


def test_hf_pull_missing_quant_or_repo_is_an_error_and_stores_nothing(
    hf_pulls: PullService, store: Store, hub_repo: dict[str, Path]
):
    with pytest.raises(ManifestNotFoundError, match="available: Q4_K_M, Q8_0"):
        hf_pulls.pull("hf.co/user/Tiny-GGUF:Q2_K")
    with pytest.raises(ManifestNotFoundError, match="pull model manifest: file does not exist"):
        hf_pulls.pull("hf.co/user/Missing-GGUF")
    assert store.entries() == []


def test_hf_token_goes_to_the_hub_only(hub: HubServer, store: Store, hub_repo: dict[str, Path]):
    settings = Settings(models_dir=store.root, hf_endpoint=hub.url, hf_token="hf_secret")
    PullService(store, settings, options=FAST).pull("hf.co/user/Tiny-GGUF")

    on_hub = [r for r in hub.app.requests if not r.path.startswith("/lfs/")]
    on_cdn = [r for r in hub.app.requests if r.path.startswith("/lfs/")]
    assert on_hub
    assert on_cdn
    assert all(r.headers.get("authorization") == "Bearer hf_secret" for r in on_hub)
    assert all("authorization" not in r.headers for r in on_cdn)


def test_hf_chat_template_comes_from_the_gguf(
    hf_pulls: PullService, store: Store, hub_repo: dict[str, Path]
):
    from ollamacli.gguffile import read_gguf

    name = hf_pulls.pull("hf.co/user/Tiny-GGUF")
    assert read_gguf(store.resolve(name).model_path).chat_template == CHATML


def test_hf_pull_downloads_the_commit_it_listed(
    hub: HubServer, hf_pulls: PullService, hub_repo: dict[str, Path]
):
    hf_pulls.pull("hf.co/user/Tiny-GGUF:Q8_0")
    commit = hub.app.commits["user/Tiny-GGUF"]
    heads = [r for r in hub.app.requests if r.method == "HEAD"]
    gets = [r for r in hub.app.requests if "/resolve/" in r.path and r.method == "GET"]
    assert [r.path for r in heads] == ["/user/Tiny-GGUF/resolve/main/Tiny-Q8_0.gguf"]
    assert gets
    assert all(f"/resolve/{commit}/" in r.path for r in gets)


def test_hf_pull_resumes_an_interrupted_download(
    hub: HubServer, store: Store, hf_pulls: PullService, tmp_path: Path
):
    from dataclasses import replace

    from ollamacli.errors import DownloadError

    path = tmp_path / "big.gguf"
    path.write_bytes(make_tiny_gguf(tmp_path / "t.gguf").read_bytes() + os.urandom(600_000))
    entry = hub.app.add_file("user/Big-GGUF", "big-Q4_K_M.gguf", path)
    hub.app.faults.drop_after, hub.app.faults.drops = 20_000, 1_000
    settings = hf_pulls.settings
    with pytest.raises(DownloadError):
        PullService(store, settings, options=replace(FAST, retries=0)).pull("hf.co/user/Big-GGUF")
    hub.app.faults.drops = 0
    first = hub.app.served["sha256:" + entry.sha256]
    hub.app.served.clear()

    name = hf_pulls.pull("hf.co/user/Big-GGUF")

    second = hub.app.served["sha256:" + entry.sha256]
    assert second < path.stat().st_size  # only what was missing (the parts kept their bytes)
    assert first + second >= path.stat().st_size
    assert store.resolve(name).model_path.read_bytes() == path.read_bytes()
