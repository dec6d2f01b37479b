"""The model registry: names that :func:`coreecho.load_model` accepts besides paths and Hub repo ids.

Three kinds of entries: ``"bundled"`` models shipped inside the package (``coreecho/weights/<name>``, found by
looking), ``"download"`` models whose authors publish a training checkpoint at a URL (the official CoReEcho
weights on Google Drive): :mod:`coreecho.hub.published` fetches, fingerprints, checks and converts it once into
coreecho's cache, and ``"hub-checkpoint"`` files on the Hugging Face Hub (encoder initialisations), fetched and
verified by :func:`fetch_weights_file`.

Example:
    >>> "coreecho-echonet" in list_models() and "phantom-tiny" in list_models()
    True
    >>> model_info("uniformer-small-k400").role
    'encoder'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from coreecho.errors import ModelNotFoundError
from coreecho.hub.fetch import cache_dir, hub_download, offline_reason, trust_on_first_use, verify_hub_file
from coreecho.hub.names import CONFIG_NAME, WEIGHTS_NAME

__all__ = ["ModelSource", "REGISTRY", "BUNDLED_DIR", "registry", "bundled_models", "list_models", "model_info",
           "is_cached", "installed_dir", "not_installed_message", "fetch_weights_file", "offline_refusal",
           "DEFAULT_MODEL", "MIRROR_ENV"]

#: The model used when none is named (``coreecho predict`` without ``--model``, ``predict_ef(video)``).
DEFAULT_MODEL = "coreecho-echonet"
#: Environment variable naming a mirror of the published files (URL, local file or folder, or Hub repo id).
MIRROR_ENV = "COREECHO_WEIGHTS_MIRROR"


@dataclass(frozen=True)
class ModelSource:
    """Where a registered model comes from.

    Attributes:
        name: registry name (``coreecho models`` lists them).
        description: one line for humans (no performance claims: see ``metrics``).
        kind: ``"hub-checkpoint"`` (an official ``.pth`` on the Hub), ``"download"`` (a checkpoint published at
            ``url``, fetched and converted on first use), or ``"bundled"`` (shipped inside the package).
        license: licence of the weights.
        role: ``"model"`` (encoder and EF head) or ``"encoder"`` (encoder initialisation only).
        repo_id, filename, revision: Hub location for ``hub-checkpoint``; ``filename`` also names a download.
        sha256: pinned sha256 of the published file; ``None`` where not yet known (the first fetch records it in
            the cache and every later fetch is compared with it, but nothing is called "verified").
        size: pinned size of the published file in bytes, when known.
        url: where a ``download`` file is published.
        metrics: the published performance of exactly this file; shown only when the installed file is verified.
        architecture, encoder_args: the encoder a ``download`` checkpoint is converted into.
    """

    name: str
    description: str
    kind: str
    license: str
    role: str = "model"
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    sha256: str | None = None
    size: int | None = None
    url: str | None = None
    metrics: str | None = None
    architecture: str = "uniformer_small"
    encoder_args: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)


REGISTRY: dict[str, ModelSource] = {
    "coreecho-echonet": ModelSource(
        name="coreecho-echonet",
        description="Official CoReEcho UniFormer-S trained on EchoNet-Dynamic (the authors' best.pth)",
        kind="download",
        license="CC-BY-NC-4.0",
        # the "Pretrained Weights" link of https://github.com/BioMedIA-MBZUAI/CoReEcho (README)
        url="https://drive.google.com/file/d/1ZNF4lMTLEnaZyhVHHTUW_MctB7kDGP6o",
        filename="best.pth",
        # Not pinned yet: coreecho's authors could not fetch the file when this entry was written, and a hash that
        # was never checked against the real file would be worse than none. The first successful fetch records its
        # sha256 in $COREECHO_CACHE/checksums/coreecho-echonet.sha256 and every later fetch must match it; until
        # sha256 (and size) are pinned here, an installed copy is listed as "unverified", without the metrics.
        sha256=None,
        size=None,
        metrics="MAE 3.90, RMSE 5.13, R2 0.8244 on the EchoNet-Dynamic test split (CoReEcho paper, MICCAI 2024)",
    ),
    "uniformer-small-k400": ModelSource(
        name="uniformer-small-k400",
        description="UniFormer-S video encoder pretrained on Kinetics-400 (16x8); stage-1 initialisation",
        kind="hub-checkpoint",
        license="see Sense-X/uniformer_video",
        role="encoder",
        repo_id="Sense-X/uniformer_video",
        filename="uniformer_small_k400_16x8.pth",
    ),
}

#: Folder of the models shipped inside the package (one sub-folder per model).
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights"


def bundled_models() -> dict[str, ModelSource]:
    """The models shipped in :data:`BUNDLED_DIR` (a folder with ``config.json`` and ``model.safetensors``)."""
    found = {}
    if BUNDLED_DIR.is_dir():
        from coreecho.hub.folder import read_config  # the model layer (torch): only when bundled models are read

        for folder in sorted(BUNDLED_DIR.iterdir()):
            if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
                cfg, _ = read_config(folder / CONFIG_NAME)
                found[folder.name] = ModelSource(
                    name=folder.name, kind="bundled", license=cfg.license,
                    description=str(cfg.metadata.get("description", "bundled model")))
    return found


def registry() -> dict[str, ModelSource]:
    """Every registered name: :data:`REGISTRY` and the bundled models."""
    return {**REGISTRY, **bundled_models()}


def list_models() -> list[str]:
    """Names accepted by :func:`~coreecho.hub.resolve.load_model` besides paths and Hub repo ids.

    Example:
        >>> "coreecho-echonet" in list_models()
        True
    """
    return sorted(registry())


def model_info(name: str) -> ModelSource:
    """The :class:`ModelSource` of a registered name (``ModelNotFoundError`` lists valid names)."""
    reg = registry()
    if name not in reg:
        raise ModelNotFoundError(f"unknown model {name!r}; registered models: {', '.join(sorted(reg))}. "
                                 "Pass a local folder, a .pth checkpoint or a Hub repo id 'owner/name' instead.")
    return reg[name]


def installed_dir(name: str) -> Path:
    """Where a ``download`` model is installed (on first use, or by ``coreecho convert --install NAME``)."""
    return cache_dir() / "models" / name


def not_installed_message(name: str, src: ModelSource, installed: Path, why: str = "") -> str:
    """What to do when a ``download`` model (e.g. the default, ``coreecho-echonet``) is not installed and cannot be
    fetched now (``why``): the manual route, a mirror, and the bundled model that runs right now."""
    return (f"{name!r} is not installed{' and cannot be downloaded now: ' + why if why else ''}. Its authors publish "
            f"it at {src.url} (file {src.filename}, licence {src.license}); coreecho fetches it on first use when "
            "online. Manual route: download it in a browser, then run `coreecho convert "
            f"{src.filename} --install {name}` (installs into {installed}); or name a copy with "
            "COREECHO_WEIGHTS_MIRROR=URL|FILE|owner/repo (load_model(..., mirror=...)). To try coreecho now, "
            "offline, use the bundled 'phantom-tiny' model: `--model phantom-tiny` on the command line, "
            "`coreecho.load_model(\"phantom-tiny\")` in Python (trained on synthetic phantoms: it shows the "
            "pipeline, not clinical accuracy).")


def offline_refusal(name: str | None, *, mirror: str | os.PathLike | None = None,
                    local_files_only: bool | None = None) -> str | None:
    """The message :func:`coreecho.load_model` would fail with, decided without importing torch: ``name`` (default
    :data:`DEFAULT_MODEL`) is a published (``download``) model that is not installed, no mirror is named, and
    downloads are off (``local_files_only``, ``HF_HUB_OFFLINE``, ``COREECHO_OFFLINE``). ``None`` otherwise (the
    model may load, or only trying says why not). The command line calls it before loading anything, so an
    offline ``coreecho predict`` without the default model fails at once.

    Example:
        >>> offline_refusal("phantom-tiny", local_files_only=True) is None
        True
    """
    name = DEFAULT_MODEL if name is None else str(name)
    src = REGISTRY.get(name)
    if src is None or src.kind != "download" or os.path.exists(os.path.expanduser(name)):
        return None  # a bundled or Hub model, or a local path that shadows the name
    if mirror is not None or os.environ.get(MIRROR_ENV, "").strip():
        return None  # a local mirror works offline; the library decides
    folder = installed_dir(name)
    if (folder / WEIGHTS_NAME).is_file():
        return None
    why = offline_reason(local_files_only)
    return None if why is None else not_installed_message(name, src, folder, why)


def is_cached(name: str, cache: str | Path | None = None) -> bool:
    """Whether a registered model can be loaded without network."""
    src = model_info(name)
    if src.kind == "bundled":
        return True
    if src.kind in ("download", "manual"):
        return (installed_dir(name) / WEIGHTS_NAME).is_file()
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(src.repo_id, src.filename, cache_dir=cache, revision=src.revision)
    except Exception:  # noqa: BLE001 - any cache inspection failure means "not usable offline"
        return False
    return isinstance(hit, str)


def fetch_weights_file(name: str, *, cache_dir_: str | Path | None = None,
                       local_files_only: bool | None = None) -> Path:
    """Local path of a registered ``hub-checkpoint`` file, downloading it if allowed; verified."""
    src = model_info(name)
    if src.kind != "hub-checkpoint":
        raise ModelNotFoundError(f"{name!r} is a {src.kind} model, not a downloadable checkpoint")
    path = hub_download(src.repo_id, src.filename, revision=src.revision, cache=cache_dir_,
                        local_files_only=local_files_only)
    verify_hub_file(path, src.sha256)
    trust_on_first_use(name, path)
    return path
