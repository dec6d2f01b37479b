"""Name resolution: :func:`load_model` turns a name, a folder, a file or a Hub repo id into a ready model.

In order: an existing folder (``config.json`` + ``model.safetensors``), an existing file (an official ``.pth``
converted on the fly, or a folder's ``config.json``/``model.safetensors``), a registered name
(:mod:`coreecho.hub.registry`), a Hub repo id ``owner/name[@revision]`` (downloaded and verified by
:mod:`coreecho.hub.fetch`). Anything else is a :class:`~coreecho.errors.ModelNotFoundError` that lists the
registered names.

Example:
    >>> model = load_model("phantom-tiny", device="cpu")  # doctest: +SKIP
    >>> model.embed_dim  # doctest: +SKIP
    64
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from coreecho.errors import ModelNotFoundError, WeightsError
from coreecho.hub.convert import load_encoder_weights, load_official_checkpoint
from coreecho.hub.fetch import hub_download, valid_repo_id, verify_hub_file
from coreecho.hub.folder import CONFIG_NAME, WEIGHTS_NAME, load_folder, read_config
from coreecho.hub.published import ensure_installed
from coreecho.hub.registry import BUNDLED_DIR, fetch_weights_file, registry
from coreecho.models.build import build_model
from coreecho.models.config import ModelConfig
from coreecho.models.coreecho import CoReEcho
from coreecho.precision import resolve_device

__all__ = ["load_model", "resolve", "valid_repo_id"]


def resolve(name_or_path: str | Path, revision: str | None, cache: str | Path | None,
            local_files_only: bool | None, mirror: str | Path | None = None) -> CoReEcho:
    """The model ``name_or_path`` names, on the CPU as stored (see the module docstring for the order)."""
    path = Path(name_or_path).expanduser()
    text = str(name_or_path)
    if path.is_dir():
        return load_folder(path)
    if path.is_file():
        if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
            return load_official_checkpoint(path)
        if path.name == WEIGHTS_NAME or path.name == CONFIG_NAME:
            return load_folder(path.parent)
        raise WeightsError(f"{path}: unsupported weights file; expected a folder with {CONFIG_NAME} + "
                           f"{WEIGHTS_NAME}, or an official .pth checkpoint")
    reg = registry()
    if text in reg:
        src = reg[text]
        if src.kind == "bundled":
            return load_folder(BUNDLED_DIR / text)
        if src.kind == "download":  # fetched, fingerprinted, checked and converted once (coreecho.hub.published)
            return load_folder(ensure_installed(text, mirror=mirror, local_files_only=local_files_only, cache=cache))
        file = fetch_weights_file(text, cache_dir_=cache, local_files_only=local_files_only)
        model = build_model(ModelConfig(architecture="uniformer_small", license=src.license,
                                        metadata={"description": src.description, "encoder_init": text}))
        load_encoder_weights(model.encoder, file)
        warnings.warn(f"{text!r} holds encoder weights only: the EF head of the returned model is untrained. "
                      "Train it (coreecho train stage2) before using predict_ef.", stacklevel=3)
        return model
    repo, _, rev = text.partition("@")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", repo) and not text.startswith((".", "/", "~")):
        if not valid_repo_id(repo):
            raise ModelNotFoundError(f"{text!r} is neither an existing folder or file nor a valid Hub repo id "
                                     "('owner/name' without '..' or a leading/trailing '.' or '-'). Registered "
                                     f"models: {', '.join(sorted(reg))}.")
        revision = rev or revision
        files = [hub_download(repo, f, revision=revision, cache=cache, local_files_only=local_files_only)
                 for f in (CONFIG_NAME, WEIGHTS_NAME)]
        entry = read_config(files[0])[1]
        if isinstance(entry, dict) and entry.get("file"):  # calibration travels with the weights
            files.append(hub_download(repo, Path(str(entry["file"])).name, revision=revision, cache=cache,
                                      local_files_only=local_files_only))
        for f in files:
            verify_hub_file(f)
        return load_folder(files[0].parent)
    raise ModelNotFoundError(f"{text!r} is not a folder, a checkpoint file, a registered model or a Hub repo id. "
                             f"Registered models: {', '.join(sorted(reg))}.")


def load_model(name_or_path: str | Path, *, device: str | torch.device | None = None, revision: str | None = None,
               cache_dir: str | Path | None = None, local_files_only: bool | None = None,
               mirror: str | Path | None = None) -> CoReEcho:
    """Load a CoReEcho model, ready for inference (eval mode).

    Args:
        name_or_path: a registered name (:func:`~coreecho.hub.registry.list_models`), a local folder with
            ``config.json`` + ``model.safetensors``, an official CoReEcho ``.pth`` checkpoint (converted on the
            fly), or a Hub repo id ``owner/name`` with an optional ``@revision``.
        device: ``"cpu"``, ``"cuda"``, a :class:`torch.device`; ``None`` picks CUDA when available.
        revision: Hub revision (branch, tag or commit) when not given with ``@``.
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE``).
        local_files_only: never download; ``None`` follows ``HF_HUB_OFFLINE`` (and ``COREECHO_OFFLINE`` for
            published checkpoints).
        mirror: where to fetch a published checkpoint (``coreecho-echonet``'s ``best.pth``) instead of the authors'
            link: a URL, a local file (or a folder holding it) or a Hub repo id; default ``$COREECHO_WEIGHTS_MIRROR``.
            The file must match the registry's fingerprints either way.

    Returns:
        The model in eval mode on ``device``.

    Raises:
        ModelNotFoundError: unknown name (the message lists valid ones) or not available offline.
        WeightsError: the file does not fit the architecture (the message lists the key differences).
        ChecksumError: a downloaded file does not match its checksum (or the first download's).
        DeviceError: ``device`` names a device this machine lacks (e.g. ``"cuda"`` without a GPU).

    Without a network, a Hub id that is not in the local cache fails at once (one short connection attempt, no
    retries) with a message that says so.

    Example:
        >>> import coreecho
        >>> model = coreecho.load_model("phantom-tiny", device="cpu")  # doctest: +SKIP
        >>> model.predict_ef("a4c.avi")  # doctest: +SKIP
        61.8
    """
    target = resolve_device(device)  # DeviceError before anything is read when the device is absent
    model = resolve(name_or_path, revision, cache_dir, local_files_only, mirror)
    return model.to(target).eval()
