"""Weights: model registry, Hub download with checksum verification, local folders, official checkpoints.

A saved coreecho model is a folder (or a Hugging Face Hub repository) with ``config.json`` and
``model.safetensors`` (tensors ``encoder.*`` and ``head.*``). Official PyTorch checkpoints are read with
``torch.load(weights_only=True)`` only, and only to convert them.

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

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from coreecho.errors import ChecksumError, ConfigError, ModelNotFoundError, WeightsError
from coreecho.models.build import build_model
from coreecho.models.config import ModelConfig
from coreecho.models.coreecho import CoReEcho

__all__ = [
    "ModelSource", "REGISTRY", "list_models", "model_info", "is_cached", "load_model", "save_pretrained",
    "push_to_hub", "convert_checkpoint", "load_official_checkpoint", "load_encoder_weights", "strict_load",
    "sha256_file", "cache_dir", "fetch_weights_file",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
CALIBRATION_KEY = "calibration"

CITATION = """@inproceedings{maani2024coreecho,
  title     = {CoReEcho: Continuous Representation Learning for 2D+time Echocardiography Analysis},
  author    = {Maani, Fadillah Adamsyah and Saeed, Numan and Matsun, Aleksandr and Yaqub, Mohammad},
  booktitle = {Medical Image Computing and Computer Assisted Intervention (MICCAI)},
  year      = {2024},
  note      = {arXiv:2403.10164}
}"""


@dataclass(frozen=True)
class ModelSource:
    """Where a registered model comes from.

    Attributes:
        name: registry name (``coreecho models`` lists them).
        description: one line for humans.
        kind: ``"hub-checkpoint"`` (an official ``.pth`` on the Hub), ``"manual"`` (the user downloads a
            file and runs ``coreecho convert --install``), or ``"bundled"`` (shipped inside the package).
        license: licence of the weights.
        role: ``"model"`` (encoder and EF head) or ``"encoder"`` (encoder initialisation only).
        repo_id, filename, revision: Hub location for ``hub-checkpoint``.
        sha256: pinned checksum of the file, when known.
        url: where a ``manual`` file is published.
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
    url: str | None = None


REGISTRY: dict[str, ModelSource] = {
    "coreecho-echonet": ModelSource(
        name="coreecho-echonet",
        description="Official CoReEcho UniFormer-S trained on EchoNet-Dynamic (MAE 3.90, RMSE 5.13, R2 0.8244)",
        kind="manual",
        license="CC-BY-NC-4.0",
        url="https://drive.google.com/file/d/1ZNF4lMTLEnaZyhVHHTUW_MctB7kDGP6o",
        filename="best.pth",
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

_BUNDLED_DIR = Path(__file__).resolve().parent / "weights"


def cache_dir() -> Path:
    """coreecho's own cache (converted models, checksum records): ``$COREECHO_CACHE`` or ``~/.cache/coreecho``."""
    return Path(os.environ.get("COREECHO_CACHE") or Path.home() / ".cache" / "coreecho")


def _bundled_models() -> dict[str, ModelSource]:
    found = {}
    if _BUNDLED_DIR.is_dir():
        for folder in sorted(_BUNDLED_DIR.iterdir()):
            if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
                cfg, _ = _read_config(folder / CONFIG_NAME)
                found[folder.name] = ModelSource(
                    name=folder.name, kind="bundled", license=cfg.license,
                    description=str(cfg.metadata.get("description", "bundled model")))
    return found


def _registry() -> dict[str, ModelSource]:
    return {**REGISTRY, **_bundled_models()}


def list_models() -> list[str]:
    """Names accepted by :func:`load_model` besides paths and Hub repo ids.

    Example:
        >>> "coreecho-echonet" in list_models()
        True
    """
    return sorted(_registry())


def model_info(name: str) -> ModelSource:
    """The :class:`ModelSource` of a registered name (``ModelNotFoundError`` lists valid names)."""
    reg = _registry()
    if name not in reg:
        raise ModelNotFoundError(f"unknown model {name!r}; registered models: {', '.join(sorted(reg))}. "
                                 "Pass a local folder, a .pth checkpoint or a Hub repo id 'owner/name' instead.")
    return reg[name]


def _installed_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def _not_installed_message(name: str, src: ModelSource, installed: Path) -> str:
    """What to do when a ``manual`` model (e.g. the default, ``coreecho-echonet``) is not installed: how to get
    it, and the bundled model that runs right now."""
    return (f"{name!r} is not installed. Its authors publish it only at {src.url} (file {src.filename}, "
            f"licence {src.license}). Download it in a browser, then run `coreecho convert {src.filename} "
            f"--install {name}` (installs into {installed}). To try coreecho now, offline, use the bundled "
            "'phantom-tiny' model: `--model phantom-tiny` on the command line, "
            "`coreecho.load_model(\"phantom-tiny\")` in Python (trained on synthetic phantoms: it shows the "
            "pipeline, not clinical accuracy).")


def is_cached(name: str, cache: str | Path | None = None) -> bool:
    """Whether a registered model can be loaded without network."""
    src = model_info(name)
    if src.kind == "bundled":
        return True
    if src.kind == "manual":
        return (_installed_dir(name) / WEIGHTS_NAME).is_file()
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(src.repo_id, src.filename, cache_dir=cache, revision=src.revision)
    except Exception:  # noqa: BLE001 - any cache inspection failure means "not usable offline"
        return False
    return isinstance(hit, str)


# ----------------------------------------------------------------------------------------------- checksums
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _verify_hub_file(path: str | Path, expected_sha256: str | None = None) -> Path:
    """Check a file from the Hub cache against its content address (and a pinned sha256, if any).

    The Hub client stores each file as ``blobs/<etag>``: the sha256 for LFS files, the git blob sha1 for
    small files. A file whose content does not match its address was corrupted or tampered with.
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    etag = real.name
    if re.fullmatch(r"[0-9a-f]{64}", etag) or expected_sha256:
        actual = sha256_file(real)
        for want, what in ((expected_sha256, "the sha256 pinned in coreecho's registry"),
                           (etag if len(etag) == 64 else None, "the sha256 the Hub declared for it")):
            if want and actual != want.lower():
                raise ChecksumError(
                    f"{path}: sha256 is {actual}, but {what} is {want}. The file is corrupt or was replaced; "
                    f"delete {real} and load the model again to re-download it.")
    elif re.fullmatch(r"[0-9a-f]{40}", etag):
        actual = _git_blob_sha1(real)
        if actual != etag:
            raise ChecksumError(f"{path}: content hash {actual} does not match the Hub's {etag}; delete {real} "
                                "and load the model again to re-download it.")
    return path


# ------------------------------------------------------------------------------------------- state dicts
def strict_load(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` requiring identical key sets and shapes; the error lists the diff."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} with other shapes: " + show(
                [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched]))
        raise WeightsError(f"{source}: the weights do not fit the model ({'; '.join(parts)}). Check that the "
                           "config's architecture matches the checkpoint.")
    module.load_state_dict(dict(state), strict=True)


def _strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def _read_torch_checkpoint(path: Path) -> Any:
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds here
        if "argparse.Namespace" in str(err) or "Namespace" in str(err).split("GLOBAL")[-1][:80]:
            raise WeightsError(_NAMESPACE_MESSAGE.format(path=path)) from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"{path}: cannot read it as a PyTorch checkpoint with weights_only=True ({first}). "
                           "Only plain tensor checkpoints are accepted; arbitrary pickles are refused.") from err


#: An official ``last.pth`` (or any checkpoint saved with the training options) pickles an ``argparse.Namespace``.
_NAMESPACE_MESSAGE = (
    "{path}: this checkpoint also stores the training options as an argparse.Namespace (the official CoReEcho "
    "'last.pth' does), which safe loading (weights_only=True) refuses. Use the official 'best.pth' instead, or, for "
    "a file you trust, strip the options once: python -c \"import torch; c = torch.load('{path}', "
    "weights_only=False); torch.save({{k: c[k] for k in ('model', 'regressor', 'epoch', 'best_error') if k in c}}, "
    "'{path}.weights.pth')\" and load '{path}.weights.pth'.")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_encoder_weights(encoder: nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> list[str]:
    """Initialise a UniFormer encoder from an official ``.pth`` (Kinetics or CoReEcho) or a state dict.

    The checkpoint's classification head (``head.*``, 400 Kinetics classes or CoReEcho's 1-output Linear)
    is dropped on purpose; every other key must match. Returns the dropped keys.
    """
    name = str(source) if not isinstance(source, Mapping) else "state dict"
    obj: Any = source if isinstance(source, Mapping) else _read_torch_checkpoint(Path(source))
    for wrapper in ("model", "model_state", "state_dict"):
        if not _is_state_dict(obj) and isinstance(obj, Mapping) and _is_state_dict(obj.get(wrapper)):
            obj = obj[wrapper]
    if not _is_state_dict(obj):
        raise WeightsError(f"{name}: expected a state dict of tensors (or a dict with 'model'), found "
                           f"{type(obj).__name__} with keys {list(obj)[:5] if isinstance(obj, Mapping) else '-'}")
    state = _strip_prefix(obj)
    dropped = sorted(k for k in state if k.startswith("head."))
    if not isinstance(getattr(encoder, "head", None), nn.Linear):
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    else:
        dropped = []
    strict_load(encoder, state, name)
    return dropped


def load_official_checkpoint(path: str | Path) -> CoReEcho:
    """Build a :class:`CoReEcho` from an official training checkpoint (``best.pth``).

    The file holds ``{'epoch', 'model', 'regressor', 'best_error'}``; keys may carry ``module.``. The
    encoder's unused ``Linear(512, 1)`` head is dropped; the regressor becomes ``model.head``.
    """
    path = Path(path)
    ckpt = _read_torch_checkpoint(path)
    if not (isinstance(ckpt, Mapping) and _is_state_dict(ckpt.get("model")) and _is_state_dict(ckpt.get("regressor"))):
        keys = list(ckpt)[:6] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise WeightsError(f"{path}: not an official CoReEcho checkpoint: expected a dict with 'model' and "
                           f"'regressor' state dicts, found {keys}. For a Kinetics UniFormer checkpoint use "
                           "load_encoder_weights().")
    cfg = ModelConfig(architecture="uniformer_small", license="CC-BY-NC-4.0", metadata={
        "description": "Official CoReEcho weights (EchoNet-Dynamic), converted by coreecho",
        "source_file": path.name, "source_sha256": sha256_file(path),
        "epoch": _plain(ckpt.get("epoch")), "best_error": _plain(ckpt.get("best_error")),
        "training_data": "EchoNet-Dynamic"})
    model = build_model(cfg, source=str(path))
    load_encoder_weights(model.encoder, ckpt["model"])
    strict_load(model.head, _strip_prefix(ckpt["regressor"]), f"{path} ['regressor']")
    return model.eval()


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value if isinstance(value, (int, float, str, type(None))) else str(value)


# --------------------------------------------------------------------------------------------- save/push
def _model_card(model: CoReEcho, extra: Mapping[str, Any]) -> str:
    cfg = model.config
    data = extra.get("training_data") or cfg.metadata.get("training_data", "not recorded")
    lines = [
        "---", f"license: {cfg.license.lower()}", "library_name: coreecho",
        "tags: [echocardiography, ejection-fraction, video, coreecho]", "---", "",
        f"# {extra.get('title', 'CoReEcho model')}", "",
        str(extra.get("description") or cfg.metadata.get("description", "A coreecho model.")), "",
        "## Use", "", "```python", "import coreecho",
        f"model = coreecho.load_model(\"{extra.get('repo_id', 'PATH_OR_REPO')}\")",
        "ef = model.predict_ef(\"a4c.avi\")", "```", "",
        "## Model", "", f"- Encoder: {cfg.architecture} {cfg.encoder_args or ''}".rstrip(),
        f"- Embedding: {model.embed_dim}-d; head: {cfg.head_args or 'official shallow MLP'}",
        f"- Input: {cfg.preprocessing.frames} frames at stride {cfg.preprocessing.stride}, "
        f"{cfg.preprocessing.size}x{cfg.preprocessing.size}, trained at about {cfg.preprocessing.fps:g} fps",
        f"- Test-time clips: {cfg.test_clips}", "",
        "## Training data", "", str(data), "",
        "## Licence", "", f"Weights: {cfg.license}. Code: coreecho (MIT).", "",
        "Not a medical device; not for clinical use without validation.", "",
        "## Citation", "", "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(lines)


def save_pretrained(model: CoReEcho, directory: str | Path, *, model_card: bool = True, **card: Any) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (by default) a ``README.md`` model card.

    Args:
        model: the model to save (any device or dtype; tensors are written as they are).
        directory: target folder, created if needed.
        model_card: also write the model card.
        **card: ``title``, ``description``, ``training_data``, ``repo_id`` for the card.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    from coreecho._version import __version__

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.config.coreecho_version = __version__
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})  # one key: a map of several is written in random order
    os.replace(tmp, out / WEIGHTS_NAME)
    model.config.save(out / CONFIG_NAME)
    _save_calibration(model, out)
    if model_card:
        (out / CARD_NAME).write_text(_model_card(model, card))
    return out


def _calibration_of(model: CoReEcho) -> Any:
    """The model's calibration (plus a detector attached later), or ``None``; stale ones are dropped."""
    cal = getattr(model, "calibration", None)
    detector = getattr(model, "shift_detector", None)
    if cal is None and detector is None:
        return None
    from coreecho.analysis.calibration import Calibration, state_fingerprint  # noqa: PLC0415

    if cal is not None and cal.fingerprint is not None and cal.fingerprint != state_fingerprint(model):
        warnings.warn("the model's weights changed after it was calibrated; its calibration is not saved. "
                      "Recalibrate on held-out data (coreecho.calibrate / coreecho calibrate).", stacklevel=4)
        return None
    if cal is None:
        return Calibration(None, detector)
    if detector is cal.detector:
        return cal
    return Calibration(cal.interval, detector, coverage=cal.coverage, metadata=cal.metadata)


def _save_calibration(model: CoReEcho, out: Path) -> None:
    """Write ``calibration.safetensors`` and the ``calibration`` entry of ``config.json`` (with both sha256s)."""
    import json

    from coreecho.analysis.calibration import FILE_NAME  # noqa: PLC0415

    cal = _calibration_of(model)
    if cal is None:
        (out / FILE_NAME).unlink(missing_ok=True)  # a stale file from an earlier save must not linger
        return
    entry = cal.save(out)
    entry["weights_sha256"] = sha256_file(out / WEIGHTS_NAME)
    data = json.loads((out / CONFIG_NAME).read_text())
    data[CALIBRATION_KEY] = entry
    (out / CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n")


def _read_config(path: Path) -> tuple[ModelConfig, Any]:
    """The model config and the raw ``calibration`` entry (``None`` when absent) of a ``config.json``."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the model config ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}")
    entry = data.pop(CALIBRATION_KEY, None)
    return ModelConfig.from_dict(data, source=str(path)), entry


def _load_calibration(model: CoReEcho, folder: Path, entry: Any) -> None:
    """Verify and attach a folder's calibration; a model without one says so once, when it is loaded."""
    from coreecho.analysis.calibration import Calibration, state_fingerprint  # noqa: PLC0415

    if entry is None:
        if model.config.task == "ef":
            warnings.warn(f"{folder}: this model carries no calibration, so its predictions have no EF interval "
                          "(ef_low/ef_high are None) and no distribution-shift flag (is_shifted is None). Fit one "
                          "on held-out labelled videos: `coreecho calibrate MODEL --data DIR` (docs/calibration.md).",
                          stacklevel=4)
        return
    want = entry.get("weights_sha256") if isinstance(entry, dict) else None
    if want and want != sha256_file(folder / WEIGHTS_NAME):
        raise ChecksumError(f"{folder / WEIGHTS_NAME}: its sha256 differs from the one its calibration was saved "
                            f"with ({want}); the weights were replaced. Restore them or recalibrate.")
    cal = Calibration.load(folder, entry)
    cal.fingerprint = state_fingerprint(model)
    model.calibration = cal
    model.shift_detector = cal.detector


def push_to_hub(model: CoReEcho, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload coreecho model", revision: str | None = None, **card: Any) -> str:
    """Create (if needed) a Hub model repository and upload config, weights, calibration and model card.

    Returns:
        The URL of the commit.
    """
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, repo_id=repo_id, **card)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message,
                                 revision=revision, repo_type="model")
    return str(getattr(info, "commit_url", info))


def convert_checkpoint(src: str | Path, out_dir: str | Path) -> Path:
    """Convert an official CoReEcho ``best.pth`` into a coreecho folder (config + safetensors + card)."""
    model = load_official_checkpoint(src)
    return save_pretrained(model, out_dir, title="CoReEcho (official weights, converted)",
                           training_data="EchoNet-Dynamic (Stanford); see the CoReEcho paper for the recipe.")


# ------------------------------------------------------------------------------------------------- load
def _load_folder(folder: Path) -> CoReEcho:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    missing = [p.name for p in (cfg_path, weights) if not p.is_file()]
    if missing:
        raise ModelNotFoundError(f"{folder}: a coreecho model folder needs {CONFIG_NAME} and {WEIGHTS_NAME}; "
                                 f"missing {', '.join(missing)}. Use `coreecho convert` for .pth checkpoints.")
    cfg, calibration = _read_config(cfg_path)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{weights}: not a readable safetensors file ({err})") from err
    model = build_model(cfg, source=str(cfg_path))
    strict_load(model, state, str(weights))
    _load_calibration(model, folder, calibration)
    return model


def fetch_weights_file(name: str, *, cache_dir_: str | Path | None = None,
                       local_files_only: bool | None = None) -> Path:
    """Local path of a registered ``hub-checkpoint`` file, downloading it if allowed; verified."""
    src = model_info(name)
    if src.kind != "hub-checkpoint":
        raise ModelNotFoundError(f"{name!r} is a {src.kind} model, not a downloadable checkpoint")
    path = _hub_download(src.repo_id, src.filename, revision=src.revision, cache=cache_dir_,
                         local_files_only=local_files_only)
    _verify_hub_file(path, src.sha256)
    _trust_on_first_use(name, path)
    return path


def _trust_on_first_use(name: str, path: Path) -> None:
    record = cache_dir() / "checksums" / f"{name}.sha256"
    actual = sha256_file(path)
    if record.is_file():
        want = record.read_text().split()[0]
        if want != actual:
            raise ChecksumError(f"{path}: sha256 {actual} differs from {want} recorded at its first download "
                                f"({record}). If the upstream file really changed, delete {record}.")
    else:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{actual}  {path.name}\n")


def _hub_download(repo_id: str, filename: str, *, revision: str | None, cache: str | Path | None,
                  local_files_only: bool | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    from huggingface_hub.errors import HFValidationError

    kwargs: dict[str, Any] = {"revision": revision, "cache_dir": cache}
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    no_network = None
    if not local_files_only and not _hub_offline_env():
        no_network = _network_problem()
        if no_network is not None:  # no retry storm: use the cache or say so at once
            kwargs["local_files_only"] = True
    try:
        return Path(hf_hub_download(repo_id, filename, **kwargs))
    except LocalEntryNotFoundError as err:
        why = (f"there is no network ({no_network})" if no_network is not None else
               "downloading is off or failed "
               f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}, local_files_only={local_files_only})")
        raise ModelNotFoundError(
            f"{where} is not in the local Hugging Face cache and {why}. On a machine with internet run "
            f"`hf download {repo_id} {filename}` (`pip install -U huggingface_hub` provides `hf`) and copy the cache "
            "(HF_HUB_CACHE), or pass a local folder to load_model().") from err
    except HFValidationError as err:
        raise ModelNotFoundError(f"{repo_id!r} is not a valid Hub repo id ('owner/name'; {err}); pass a registered "
                                 "name, a local folder or a .pth file instead.") from err
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise ModelNotFoundError(f"{where} does not exist on the Hugging Face Hub ({type(err).__name__}).") from err
    except OSError as err:
        raise ModelNotFoundError(f"{where}: download failed ({err}). Check the network, or use a local copy.") from err


def _hub_offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


#: Seconds to wait for a TCP connection to the Hub before declaring the network absent.
NETWORK_TIMEOUT = 3.0
_network_checked: dict[str, str | None] = {}


def _network_problem() -> str | None:
    """Why the Hub cannot be reached (no DNS, refused, timeout), or ``None`` when a connection opens.

    One TCP connection with a short timeout, checked once per process and endpoint, instead of the Hub client's
    retries (tens of seconds of messages without a network).
    """
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if endpoint in _network_checked:
        return _network_checked[endpoint]
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    problem = None
    try:
        with socket.create_connection((host, port), timeout=NETWORK_TIMEOUT):
            pass
    except OSError as err:
        problem = f"cannot connect to {host}:{port}: {err.strerror or err}"
    _network_checked[endpoint] = problem
    return problem


def _valid_repo_id(repo: str) -> bool:
    """``owner/name`` as the Hub allows it: word characters, '-', '.', no '..', not starting or ending with '.'/'-'."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or ".." in repo or "--" in repo:
        return False
    return all(part and part[0] not in ".-" and part[-1] not in ".-" for part in repo.split("/"))


def _resolve(name_or_path: str | Path, revision: str | None, cache: str | Path | None,
             local_files_only: bool | None) -> CoReEcho:
    path = Path(name_or_path).expanduser()
    text = str(name_or_path)
    if path.is_dir():
        return _load_folder(path)
    if path.is_file():
        if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
            return load_official_checkpoint(path)
        if path.name == WEIGHTS_NAME or path.name == CONFIG_NAME:
            return _load_folder(path.parent)
        raise WeightsError(f"{path}: unsupported weights file; expected a folder with {CONFIG_NAME} + "
                           f"{WEIGHTS_NAME}, or an official .pth checkpoint")
    reg = _registry()
    if text in reg:
        src = reg[text]
        if src.kind == "bundled":
            return _load_folder(_BUNDLED_DIR / text)
        if src.kind == "manual":
            installed = _installed_dir(text)
            if (installed / WEIGHTS_NAME).is_file():
                return _load_folder(installed)
            raise ModelNotFoundError(_not_installed_message(text, src, installed))
        file = fetch_weights_file(text, cache_dir_=cache, local_files_only=local_files_only)
        model = build_model(ModelConfig(architecture="uniformer_small", license=src.license,
                                        metadata={"description": src.description, "encoder_init": text}))
        load_encoder_weights(model.encoder, file)
        warnings.warn(f"{text!r} holds encoder weights only: the EF head of the returned model is untrained. "
                      "Train it (coreecho train stage2) before using predict_ef.", stacklevel=3)
        return model
    repo, _, rev = text.partition("@")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", repo) and not text.startswith((".", "/", "~")):
        if not _valid_repo_id(repo):
            raise ModelNotFoundError(f"{text!r} is neither an existing folder or file nor a valid Hub repo id "
                                     "('owner/name' without '..' or a leading/trailing '.' or '-'). Registered "
                                     f"models: {', '.join(sorted(reg))}.")
        revision = rev or revision
        files = [_hub_download(repo, f, revision=revision, cache=cache, local_files_only=local_files_only)
                 for f in (CONFIG_NAME, WEIGHTS_NAME)]
        entry = _read_config(files[0])[1]
        if isinstance(entry, dict) and entry.get("file"):  # calibration travels with the weights
            files.append(_hub_download(repo, Path(str(entry["file"])).name, revision=revision, cache=cache,
                                       local_files_only=local_files_only))
        for f in files:
            _verify_hub_file(f)
        return _load_folder(files[0].parent)
    raise ModelNotFoundError(f"{text!r} is not a folder, a checkpoint file, a registered model or a Hub repo id. "
                             f"Registered models: {', '.join(sorted(reg))}.")


def load_model(name_or_path: str | Path, *, device: str | torch.device | None = None, revision: str | None = None,
               cache_dir: str | Path | None = None, local_files_only: bool | None = None) -> CoReEcho:
    """Load a CoReEcho model, ready for inference (eval mode).

    Args:
        name_or_path: a registered name (:func:`list_models`), a local folder with ``config.json`` +
            ``model.safetensors``, an official CoReEcho ``.pth`` checkpoint (converted on the fly), or a Hub
            repo id ``owner/name`` with an optional ``@revision``.
        device: ``"cpu"``, ``"cuda"``, a :class:`torch.device`; ``None`` picks CUDA when available.
        revision: Hub revision (branch, tag or commit) when not given with ``@``.
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE``).
        local_files_only: never download; ``None`` follows ``HF_HUB_OFFLINE``.

    Returns:
        The model in eval mode on ``device``.

    Raises:
        ModelNotFoundError: unknown name (the message lists valid ones) or not available offline.
        WeightsError: the file does not fit the architecture (the message lists the key differences).
        ChecksumError: a downloaded file does not match its checksum.
        DeviceError: ``device`` names a device this machine lacks (e.g. ``"cuda"`` without a GPU).

    Without a network, a Hub id that is not in the local cache fails at once (one short connection attempt, no
    retries) with a message that says so.

    Example:
        >>> import coreecho
        >>> model = coreecho.load_model("phantom-tiny", device="cpu")  # doctest: +SKIP
        >>> model.predict_ef("a4c.avi")  # doctest: +SKIP
        61.8
    """
    from coreecho.precision import resolve_device

    target = resolve_device(device)  # DeviceError before anything is read when the device is absent
    model = _resolve(name_or_path, revision, cache_dir, local_files_only)
    return model.to(target).eval()
