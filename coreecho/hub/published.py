"""Published checkpoints by name: fetched on first use, fingerprinted, checked, converted once, listed honestly.

A ``download`` entry of the registry (the official ``coreecho-echonet``: the authors' ``best.pth`` on Google Drive)
is installed into ``$COREECHO_CACHE/models/NAME`` the first time it is loaded (:func:`ensure_installed`):

1. **fetch** from the entry's URL (:func:`coreecho.hub.download.download`: Google Drive's confirmation step,
   resume, progress, timeouts), or from a mirror (``mirror=`` / ``$COREECHO_WEIGHTS_MIRROR``: a URL, a local file,
   or a Hub repo id holding the same file). Offline (``HF_HUB_OFFLINE``, ``COREECHO_OFFLINE``,
   ``local_files_only``, or no connection to the host: one short probe) it fails at once with the manual route;
2. **fingerprint**: the file's size and sha256 must match the entry's pins, and the sha256 recorded at the first
   fetch (:func:`~coreecho.hub.fetch.trust_on_first_use`);
3. **convert** with ``torch.load(weights_only=True)`` and **check** the structure (:mod:`coreecho.hub.checks`);
4. **install** the coreecho folder (built aside, then renamed in) with ``provenance.json``: where the file came
   from, its fingerprints and the converted weights' sha256; the licence is printed once.

:func:`status` says what an installed copy is: ``"verified"`` (its source sha256 equals the pinned one, and the
weights are those converted then), ``"unverified"`` (fetched, nothing pinned to compare with), ``"user-converted"``
(installed by ``coreecho convert --install`` from a file that does not match a pin), ``"modified"`` (weights changed
after installation) or ``"not installed"``. Only a verified copy is shown with the paper's metrics.

Example:
    >>> status("coreecho-echonet") in ("not installed", "verified", "unverified", "user-converted", "modified")
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from coreecho._version import __version__
from coreecho.errors import ChecksumError, ModelNotFoundError
from coreecho.hub.convert import load_official_checkpoint
from coreecho.hub.download import download, is_url, local_path
from coreecho.hub.fetch import (cache_dir, hub_download, network_problem, offline_reason, sha256_file,
                                trust_on_first_use, valid_repo_id)
from coreecho.hub.folder import WEIGHTS_NAME, save_pretrained, write_json
from coreecho.hub.registry import MIRROR_ENV, ModelSource, installed_dir, model_info, not_installed_message

__all__ = ["ensure_installed", "install_checkpoint", "fetch_published", "status", "provenance", "mirror_setting",
           "PROVENANCE_NAME", "MIRROR_ENV", "STATUSES"]

#: The file of an installed folder that says where its weights came from.
PROVENANCE_NAME = "provenance.json"
STATUSES = ("verified", "unverified", "user-converted", "modified", "not installed")


def mirror_setting(mirror: str | os.PathLike | None = None) -> str | None:
    """The mirror to use: ``mirror``, else ``$COREECHO_WEIGHTS_MIRROR``, else ``None`` (the authors' link)."""
    value = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "").strip() or None
    return None if value is None else str(value)


def fetch_published(name: str, src: ModelSource, *, mirror: str | os.PathLike | None = None,
                    local_files_only: bool | None = None, cache: str | Path | None = None,
                    progress: bool | None = None) -> tuple[Path, str, bool]:
    """The published file of ``name`` on disk: (path, where it came from, whether it is a temporary download).

    Raises:
        ModelNotFoundError: offline, unreachable, or the mirror does not hold the file; the message gives the manual
            route.
    """
    where = mirror_setting(mirror)
    if where is not None and (not is_url(where) or where.startswith("file:")):  # a local file, folder or Hub repo
        path = local_path(where)
        if path.is_dir():
            path = path / str(src.filename)
        if path.is_file():
            return path, str(path), False
        if not valid_repo_id(where):
            raise ModelNotFoundError(f"mirror {where!r}: no such file (give a URL, a local {src.filename}, a folder "
                                     "holding it, or a Hub repo id 'owner/name').")
        file = hub_download(where, str(src.filename), revision=None, cache=cache, local_files_only=local_files_only)
        return file, f"hf://{where}/{src.filename}", False
    url = where or str(src.url)
    why = offline_reason(local_files_only) or network_problem(url)
    if why is not None:
        raise ModelNotFoundError(not_installed_message(name, src, installed_dir(name), why))
    target = cache_dir() / "downloads" / name / str(src.filename)
    try:
        download(url, target, expected_size=src.size, progress=progress)
    except ModelNotFoundError as err:
        raise ModelNotFoundError(f"{err}\n{not_installed_message(name, src, installed_dir(name))}") from err
    return target, url, True


def _fingerprint(name: str, src: ModelSource, path: Path, origin: str) -> dict[str, Any]:
    """Size and sha256 of ``path``, compared with the pins (and, for fetched files, the first fetch's record)."""
    size, sha = path.stat().st_size, sha256_file(path)
    pinned = bool(src.sha256) and sha == str(src.sha256).lower()
    if origin == "fetched":
        if src.size is not None and size != src.size:
            raise ChecksumError(f"{path}: {size} bytes, but the published {src.filename} of {name!r} has {src.size}; "
                                "it is not the published file (delete it and fetch again).")
        if src.sha256 and not pinned:
            raise ChecksumError(f"{path}: sha256 {sha}, but the published {src.filename} of {name!r} is pinned at "
                                f"{src.sha256}; it is not the published file (delete it and fetch again).")
        trust_on_first_use(name, path, sha)
    return {"source_size": size, "source_sha256": sha, "pinned_sha256": src.sha256, "pinned_match": pinned}


def install_checkpoint(name: str, path: str | Path, *, origin: str = "user-converted",
                       source: str | None = None) -> Path:
    """Fingerprint, convert, check and install the checkpoint ``path`` as the registered ``name``.

    ``origin`` is ``"fetched"`` (from the published link or a mirror: size and sha256 must match the pins and the
    first fetch) or ``"user-converted"`` (``coreecho convert --install``: listed as verified only when it matches
    the pinned sha256). Structural checks are strict either way (:mod:`coreecho.hub.checks`).

    Returns:
        The installed folder.
    """
    src = model_info(name)
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such checkpoint file")
    prints = _fingerprint(name, src, path, origin)
    model = load_official_checkpoint(path, trained=True, architecture=src.architecture, encoder_args=src.encoder_args)
    model.config.license = src.license
    model.config.metadata["registry_name"] = name
    target = installed_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.coreecho-{os.getpid()}.building")
    shutil.rmtree(building, ignore_errors=True)
    try:
        save_pretrained(model, building, title=f"{name} (official CoReEcho weights, converted by coreecho)",
                        training_data="EchoNet-Dynamic (Stanford); see the CoReEcho paper for the recipe.")
        write_json(building / PROVENANCE_NAME, {
            "name": name, "origin": origin, "source": source or str(path), "source_file": path.name, **prints,
            "weights_sha256": sha256_file(building / WEIGHTS_NAME), "checks": "passed (keys, shapes, dtypes, "
            "finite, trained BatchNorm statistics)", "coreecho_version": __version__,
            "installed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        old = target.with_name(f".{target.name}.coreecho-{os.getpid()}.previous")
        if target.exists():
            os.replace(target, old)
        os.replace(building, target)  # the folder appears complete, or not at all
    finally:
        shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return target


def ensure_installed(name: str, *, mirror: str | os.PathLike | None = None, local_files_only: bool | None = None,
                     cache: str | Path | None = None, progress: bool | None = None) -> Path:
    """The installed folder of the ``download`` model ``name``, fetching and installing it on first use."""
    folder = installed_dir(name)
    if (folder / WEIGHTS_NAME).is_file():
        return folder
    with _install_lock(name):  # two first uses at once: the second waits, then finds the model installed
        if (folder / WEIGHTS_NAME).is_file():
            return folder
        return _fetch_and_install(name, mirror=mirror, local_files_only=local_files_only, cache=cache,
                                  progress=progress)


@contextlib.contextmanager
def _install_lock(name: str) -> Iterator[None]:
    """A blocking, per-machine lock on installing ``name`` (``flock``; none where it is unavailable)."""
    path = cache_dir() / "downloads" / f".{name}.install.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic renames still keep the folder whole
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: go on unlocked
            pass
        yield
    finally:
        os.close(fd)


def _fetch_and_install(name: str, *, mirror: str | os.PathLike | None, local_files_only: bool | None,
                       cache: str | Path | None, progress: bool | None) -> Path:
    src = model_info(name)
    file, source, temporary = fetch_published(name, src, mirror=mirror, local_files_only=local_files_only,
                                              cache=cache, progress=progress)
    try:
        folder = install_checkpoint(name, file, origin="fetched", source=source)
    except BaseException:
        if temporary:
            file.unlink(missing_ok=True)  # a wrong file must not be picked up again
        raise
    if temporary:
        file.unlink(missing_ok=True)  # converted once; the sha256 record stays in the cache
    _show_licence(name, src)
    return folder


def _show_licence(name: str, src: ModelSource) -> None:
    """Say once, when a published model is installed (its first use), what it is and under which licence."""
    kind = {"CC-BY-NC-4.0": "CC BY-NC 4.0: non-commercial use only, with attribution "
                            "(https://creativecommons.org/licenses/by-nc/4.0/)"}.get(src.license, src.license)
    print(f"coreecho: installed {name!r} ({status(name)}) in {installed_dir(name)}. Weights by the CoReEcho authors "
          f"(Maani et al., MICCAI 2024), licence {kind}. Not a medical device.", file=sys.stderr)


def provenance(name: str) -> dict[str, Any] | None:
    """The ``provenance.json`` of an installed model, or ``None``."""
    try:
        data = json.loads((installed_dir(name) / PROVENANCE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status(name: str) -> str:
    """What an installed ``download`` model is: one of :data:`STATUSES` (see the module docstring)."""
    src = model_info(name)
    weights = installed_dir(name) / WEIGHTS_NAME
    if not weights.is_file():
        return "not installed"
    info = provenance(name)
    if info is None:
        return "user-converted"  # installed before provenance records existed, or by hand
    if info.get("weights_sha256") != sha256_file(weights):
        return "modified"
    if src.sha256 and info.get("source_sha256") == str(src.sha256).lower():
        return "verified"
    return "user-converted" if info.get("origin") == "user-converted" else "unverified"
