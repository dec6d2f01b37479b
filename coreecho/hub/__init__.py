"""Weights: the model registry, fetching with checksums, official checkpoints, model folders, name resolution.

One job per module, the way timm keeps its registry, builder and Hub code apart from the model files:

- :mod:`coreecho.hub.registry` — registered names (:data:`REGISTRY`, bundled models), :func:`list_models`,
  :func:`model_info`, :func:`is_cached`, :func:`fetch_weights_file`.
- :mod:`coreecho.hub.fetch` — Hub downloads, checksum verification, the offline/network probe.
- :mod:`coreecho.hub.download` — one published file over HTTP(S): Google Drive's confirmation step, resume,
  progress, timeouts.
- :mod:`coreecho.hub.checks` — structural checks of converted weights (keys, shapes, dtypes, finite values,
  trained BatchNorm statistics).
- :mod:`coreecho.hub.convert` — official ``.pth`` checkpoints (read with ``torch.load(weights_only=True)`` only)
  into state dicts and models; :func:`strict_load`.
- :mod:`coreecho.hub.folder` — a model folder: weights, config, calibration, model card; :func:`save_pretrained`,
  :func:`push_to_hub`, :func:`convert_checkpoint`.
- :mod:`coreecho.hub.published` — published checkpoints by name (``coreecho-echonet``): fetched on first use,
  fingerprinted, converted once into the cache, listed as verified only for a pinned match.
- :mod:`coreecho.hub.resolve` — :func:`load_model`: a name, folder, file or Hub repo id into a model.

Imports run one way: ``fetch`` → ``download`` → ``checks`` → ``convert`` → ``folder`` → ``registry`` →
``published`` → ``resolve``; the package sits above
the model layer (:mod:`coreecho.models`), which never imports it. Every name below stays importable from
``coreecho.hub``.

Example:
    >>> import tempfile
    >>> from coreecho import CoReEcho, load_model
    >>> from coreecho.models.config import ModelConfig
    >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
    ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}))
    >>> folder = model.save_pretrained(tempfile.mkdtemp())
    >>> load_model(folder).embed_dim
    64
"""

from coreecho._lazy import lazy_exports

# Exported lazily (PEP 562): ``import coreecho.hub.registry`` (names, offline checks) must not import torch, which
# the model-building modules below do. Each name is imported from its module on first use.
_EXPORTS = {
    **{name: "coreecho.hub.convert" for name in ("load_encoder_weights", "load_official_checkpoint", "strict_load")},
    **{name: "coreecho.hub.fetch" for name in ("NETWORK_TIMEOUT", "cache_dir", "sha256_file")},
    **{name: "coreecho.hub.folder" for name in ("CALIBRATION_KEY", "CARD_NAME", "CITATION", "CONFIG_NAME",
                                                "WEIGHTS_NAME", "convert_checkpoint", "push_to_hub",
                                                "save_pretrained")},
    **{name: "coreecho.hub.published" for name in ("MIRROR_ENV", "ensure_installed", "install_checkpoint",
                                                   "status")},
    **{name: "coreecho.hub.registry" for name in ("REGISTRY", "ModelSource", "fetch_weights_file", "is_cached",
                                                  "list_models", "model_info")},
    "load_model": "coreecho.hub.resolve",
}
__getattr__, __dir__ = lazy_exports("coreecho.hub", _EXPORTS)

__all__ = [
    "ModelSource", "REGISTRY", "list_models", "model_info", "is_cached", "load_model", "save_pretrained",
    "push_to_hub", "convert_checkpoint", "load_official_checkpoint", "load_encoder_weights", "strict_load",
    "sha256_file", "cache_dir", "fetch_weights_file", "CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "CALIBRATION_KEY",
    "CITATION", "NETWORK_TIMEOUT", "ensure_installed", "install_checkpoint", "status", "MIRROR_ENV",
]
