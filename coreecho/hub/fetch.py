"""Fetching weights files: Hugging Face Hub downloads, checksums, and a fast answer when there is no network.

Every downloaded file is checked against its content address in the Hub cache (the sha256 of LFS files, the git
blob sha1 of small ones), against a sha256 pinned in the registry when there is one, and against the sha256
recorded at its first download (:func:`trust_on_first_use`). Without a network, one short TCP connection
(:func:`network_problem`) decides at once that only the local cache can be used, instead of the Hub client's
retries.

This module knows nothing of models: :mod:`coreecho.hub.registry` says what to fetch, :mod:`coreecho.hub.resolve`
when.

Example:
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> _ = f.write_bytes(b"coreecho")
    >>> sha256_file(f)[:16]
    '350b3eebe30f40e6'
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from coreecho._atomic import replace_atomically
from coreecho.errors import ChecksumError, ModelNotFoundError

__all__ = ["cache_dir", "sha256_file", "git_blob_sha1", "verify_hub_file", "trust_on_first_use", "hub_download",
           "hub_offline_env", "offline_reason", "network_problem", "network_checked", "valid_repo_id",
           "NETWORK_TIMEOUT"]

#: Seconds to wait for a TCP connection to the Hub before declaring the network absent.
NETWORK_TIMEOUT = 3.0
#: Answers of :func:`network_problem`, per endpoint, for the life of the process.
network_checked: dict[str, str | None] = {}


def cache_dir() -> Path:
    """coreecho's own cache (converted models, checksum records): ``$COREECHO_CACHE`` or ``~/.cache/coreecho``."""
    return Path(os.environ.get("COREECHO_CACHE") or Path.home() / ".cache" / "coreecho")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git blob sha1 of a file (the Hub's content address of small, non-LFS files)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify_hub_file(path: str | Path, expected_sha256: str | None = None) -> Path:
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
        actual = git_blob_sha1(real)
        if actual != etag:
            raise ChecksumError(f"{path}: content hash {actual} does not match the Hub's {etag}; delete {real} "
                                "and load the model again to re-download it.")
    return path


def trust_on_first_use(name: str, path: Path, actual: str | None = None) -> None:
    """Record the sha256 of ``name``'s file at its first download; refuse a later file that differs.

    ``actual`` is the file's sha256 when already computed.
    """
    record = cache_dir() / "checksums" / f"{name}.sha256"
    actual = actual or sha256_file(path)
    if record.is_file():
        want = record.read_text().split()[0]
        if want != actual:
            raise ChecksumError(f"{path}: sha256 {actual} differs from {want} recorded at its first download "
                                f"({record}). If the upstream file really changed, delete {record}.")
    else:
        record.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(record, lambda fh: fh.write(f"{actual}  {path.name}\n"))  # never a truncated record


def hub_download(repo_id: str, filename: str, *, revision: str | None, cache: str | Path | None,
                 local_files_only: bool | None) -> Path:
    """Local path of ``repo_id/filename`` (from the Hub cache, or downloaded when allowed and reachable).

    Raises:
        ModelNotFoundError: not cached and no network (said at once), an invalid or unknown repo, revision or
            file, or a failed download; the message says what to do.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    kwargs: dict[str, Any] = {"revision": revision, "cache_dir": cache}
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    no_network = None
    if not local_files_only and not hub_offline_env():
        no_network = network_problem()
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


def hub_offline_env() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no downloads."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def offline_reason(local_files_only: bool | None = None) -> str | None:
    """Why downloads are off (``local_files_only``, ``HF_HUB_OFFLINE``, ``COREECHO_OFFLINE``), or ``None``."""
    if local_files_only:
        return "local_files_only=True"
    if hub_offline_env():
        return f"HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}"
    if os.environ.get("COREECHO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return f"COREECHO_OFFLINE={os.environ['COREECHO_OFFLINE']}"
    return None


def network_problem(url: str | None = None) -> str | None:
    """Why ``url``'s host (default: the Hub) cannot be reached (no DNS, refused, timeout), or ``None``.

    One TCP connection with a short timeout, checked once per process and endpoint (:data:`network_checked`),
    instead of a client's retries (tens of seconds of messages without a network).
    """
    import socket
    from urllib.parse import urlparse

    endpoint = url or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parts = urlparse(endpoint)
    host, port = parts.hostname or "huggingface.co", parts.port or (443 if parts.scheme == "https" else 80)
    endpoint = f"{parts.scheme}://{host}:{port}"
    if endpoint in network_checked:
        return network_checked[endpoint]
    problem = None
    try:
        with socket.create_connection((host, port), timeout=NETWORK_TIMEOUT):
            pass
    except OSError as err:
        problem = f"cannot connect to {host}:{port}: {err.strerror or err}"
    network_checked[endpoint] = problem
    return problem


def valid_repo_id(repo: str) -> bool:
    """``owner/name`` as the Hub allows it: word characters, '-', '.', no '..', not starting or ending with '.'/'-'.

    Example:
        >>> valid_repo_id("owner/model-1"), valid_repo_id("owner/../x")
        (True, False)
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or ".." in repo or "--" in repo:
        return False
    return all(part and part[0] not in ".-" and part[-1] not in ".-" for part in repo.split("/"))
