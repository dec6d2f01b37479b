"""Write files into a local Hugging Face cache laid out as huggingface_hub expects (no network)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def add_to_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "a" * 40,
                    lfs: tuple[str, ...] = (".safetensors", ".pth")) -> Path:
    """Store ``files`` under ``cache`` for ``repo_id`` at ``commit`` (also refs/main); returns the snapshot."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for name, data in files.items():
        if name.endswith(lfs):
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = repo_dir / "blobs" / etag
        blob.write_bytes(data)
        link = snap / name
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snap


def blob_of(snapshot: Path, name: str) -> Path:
    return Path(os.path.realpath(snapshot / name))
