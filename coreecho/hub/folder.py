"""A model folder: ``config.json`` + ``model.safetensors`` (+ ``calibration.safetensors``) + a model card.

A saved coreecho model is a folder (or a Hugging Face Hub repository) with ``config.json`` (the
:class:`~coreecho.models.config.ModelConfig`, plus a ``calibration`` entry when the model carries one) and
``model.safetensors`` (tensors ``encoder.*`` and ``head.*``). A model's calibration and shift detector
(:attr:`CoReEcho.calibration <coreecho.models.coreecho.CoReEcho.calibration>`, ``shift_detector``) are written
to ``calibration.safetensors`` with both files' sha256 in ``config.json``, and read back and verified on load.
This module does the input/output for the model class, which only holds data (it never imports this layer).

Example:
    >>> import tempfile
    >>> from coreecho.models.coreecho import CoReEcho
    >>> from coreecho.models.config import ModelConfig
    >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
    ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}))
    >>> folder = save_pretrained(model, tempfile.mkdtemp())
    >>> sorted(p.name for p in folder.iterdir())
    ['README.md', 'config.json', 'model.safetensors']
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from coreecho._atomic import replace_atomically
from coreecho._version import __version__
from coreecho._warnings import warn_user
from coreecho.analysis.conformal import FILE_NAME as CALIBRATION_FILE
from coreecho.analysis.conformal import Calibration, state_fingerprint
from coreecho.errors import ChecksumError, ConfigError, ModelNotFoundError, WeightsError
from coreecho.hub.convert import load_official_checkpoint, strict_load
from coreecho.hub.fetch import sha256_file
from coreecho.hub.names import CONFIG_NAME, WEIGHTS_NAME  # defined without dependencies for the registry
from coreecho.models.build import build_model
from coreecho.models.config import ModelConfig, read_json
from coreecho.models.coreecho import CoReEcho

__all__ = ["save_pretrained", "push_to_hub", "convert_checkpoint", "load_folder", "read_config", "card_text",
           "calibration_of", "write_json", "internal_load", "CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "CALIBRATION_KEY", "CITATION"]

CARD_NAME = "README.md"
CALIBRATION_KEY = "calibration"

CITATION = """@inproceedings{maani2024coreecho,
  title     = {CoReEcho: Continuous Representation Learning for 2D+time Echocardiography Analysis},
  author    = {Maani, Fadillah Adamsyah and Saeed, Numan and Matsun, Aleksandr and Yaqub, Mohammad},
  booktitle = {Medical Image Computing and Computer Assisted Intervention (MICCAI)},
  year      = {2024},
  note      = {arXiv:2403.10164}
}"""


# ------------------------------------------------------------------------------------------------- save
def card_text(model: CoReEcho, extra: Mapping[str, Any]) -> str:
    """The ``README.md`` of a model folder (Hub metadata, use, model, training data, licence, citation)."""
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
    """Write ``config.json``, ``model.safetensors``, the calibration (if any) and (by default) a model card.

    Args:
        model: the model to save (any device or dtype; tensors are written as they are).
        directory: target folder, created if needed.
        model_card: also write the ``README.md`` model card.
        **card: ``title``, ``description``, ``training_data``, ``repo_id`` for the card.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.config.coreecho_version = __version__
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # every file is replaced atomically (coreecho._atomic); config.json, written last, is what makes the folder
    # load, so a run killed earlier leaves the previous config.json (never a truncated one)
    replace_atomically(out / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}),
                       path=True)  # one metadata key: a map of several is written in random order
    data = model.config.to_dict()
    entry = _save_calibration(model, out)
    if entry is not None:
        data[CALIBRATION_KEY] = entry
    write_json(out / CONFIG_NAME, data)
    if entry is None:  # a stale file of an earlier save must not linger (removed once config.json no longer names it)
        (out / CALIBRATION_FILE).unlink(missing_ok=True)
    if model_card:
        text = card_text(model, card)
        replace_atomically(out / CARD_NAME, lambda fh: fh.write(text))
    return out


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically (a kill leaves the previous file)."""
    text = json.dumps(data, indent=2) + "\n"
    return replace_atomically(path, lambda fh: fh.write(text))


def calibration_of(model: CoReEcho) -> Calibration | None:
    """What a save writes: the model's calibration, with its current ``shift_detector`` (which
    :func:`coreecho.analysis.shift.attach` may have replaced); ``None`` when it has neither, or when its weights
    changed after it was calibrated (a warning says so)."""
    cal, detector = model.calibration, model.shift_detector
    if cal is None and detector is None:
        return None
    if cal is not None and cal.fingerprint is not None and cal.fingerprint != state_fingerprint(model):
        warnings.warn("the model's weights changed after it was calibrated; its calibration is not saved. "
                      "Recalibrate on held-out data (coreecho.calibrate / coreecho calibrate).", stacklevel=4)
        return None
    if cal is None:
        return Calibration(None, detector)
    if detector is cal.detector:
        return cal
    return Calibration(cal.interval, detector, coverage=cal.coverage, metadata=cal.metadata)


def _save_calibration(model: CoReEcho, out: Path) -> dict[str, Any] | None:
    """Write ``calibration.safetensors`` (atomically); return the ``calibration`` entry of ``config.json`` (with both
    files' sha256), or ``None`` when the model has no calibration."""
    cal = calibration_of(model)
    if cal is None:
        return None
    entry = cal.save(out)
    entry["weights_sha256"] = sha256_file(out / WEIGHTS_NAME)
    return entry


def push_to_hub(model: CoReEcho, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload coreecho model", revision: str | None = None, **card: Any) -> str:
    """Create (if needed) a Hub model repository and upload config, weights, calibration and model card.

    Returns:
        The URL of the commit.
    """
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
def read_config(path: Path) -> tuple[ModelConfig, Any]:
    """The model config and the raw ``calibration`` entry (``None`` when absent) of a ``config.json``."""
    data = read_json(path)  # ConfigError naming the file: unreadable, not UTF-8, not JSON, nested too deeply
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}")
    entry = data.pop(CALIBRATION_KEY, None)
    return ModelConfig.from_dict(data, source=str(path)), entry


#: Models (folder, weights size and mtime) already said to carry no calibration in this process.
_SAID_UNCALIBRATED: set[tuple[str, int, int]] = set()
_INTERNAL_LOAD: contextvars.ContextVar[bool] = contextvars.ContextVar("coreecho_internal_load", default=False)


@contextlib.contextmanager
def internal_load() -> Iterator[None]:
    """Loads inside this block are the library's own (a training run reloading its best model, a stage-2 run
    reading its stage-1 encoder): a missing calibration is expected there and not said.

    Example:
        >>> with internal_load():
        ...     pass
    """
    token = _INTERNAL_LOAD.set(True)
    try:
        yield
    finally:
        _INTERNAL_LOAD.reset(token)


def _say_uncalibrated(folder: Path) -> None:
    """Warn that the model in ``folder`` has no calibration: once per model per process, at the caller's line."""
    if _INTERNAL_LOAD.get():
        return
    try:
        st = (folder / WEIGHTS_NAME).stat()
        key = (str(folder.resolve()), st.st_size, st.st_mtime_ns)  # weights rewritten in place: another model
    except OSError:
        key = (str(folder), 0, 0)
    if key in _SAID_UNCALIBRATED:
        return
    _SAID_UNCALIBRATED.add(key)
    warn_user(f"{folder}: this model carries no calibration, so its predictions have no EF interval "
              "(ef_low/ef_high are None) and no distribution-shift flag (is_shifted is None). Fit one on held-out "
              "labelled videos: `coreecho calibrate MODEL --data DIR` (docs/calibration.md). Said once per model.")


def _load_calibration(model: CoReEcho, folder: Path, entry: Any) -> None:
    """Verify and set a folder's calibration on the model; a model without one says so once per process."""
    if entry is None:
        if model.config.task == "ef":
            _say_uncalibrated(folder)
        return
    want = entry.get("weights_sha256") if isinstance(entry, dict) else None
    if want and want != sha256_file(folder / WEIGHTS_NAME):
        raise ChecksumError(f"{folder / WEIGHTS_NAME}: its sha256 differs from the one its calibration was saved "
                            f"with ({want}); the weights were replaced. Restore them or recalibrate.")
    cal = Calibration.load(folder, entry)
    cal.check_width(model.embed_dim, str(folder / CONFIG_NAME))  # fitted on a model of another width: refused
    cal.fingerprint = state_fingerprint(model)
    model.calibration = cal
    model.shift_detector = cal.detector


def load_folder(folder: Path) -> CoReEcho:
    """The model saved in ``folder`` (strict: every tensor must fit), with its verified calibration."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    missing = [p.name for p in (cfg_path, weights) if not p.is_file()]
    if missing:
        raise ModelNotFoundError(f"{folder}: a coreecho model folder needs {CONFIG_NAME} and {WEIGHTS_NAME}; "
                                 f"missing {', '.join(missing)}. Use `coreecho convert` for .pth checkpoints.")
    cfg, calibration = read_config(cfg_path)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{weights}: not a readable safetensors file ({err})") from err
    model = build_model(cfg, source=str(cfg_path))
    strict_load(model, state, str(weights))
    _load_calibration(model, folder, calibration)
    return model
