"""``coreecho env``: the facts a bug report needs, offline.

Versions (python, coreecho, torch with its build and CUDA version, torchvision, numpy, the video decoders PyAV
and decord, pydicom and the DICOM decoder plugins), CPU features (AVX2, AVX-512, AVX512-BF16, AMX), devices
(CUDA, MPS), thread counts, cache folders (coreecho's and Hugging Face's) and the registered models with whether
each is available offline. Nothing here opens a network connection: packages are looked up by their installed
metadata and models in the local caches only.

Example:
    $ coreecho env
    $ coreecho env --json > env.json
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_env", "run_env", "collect_environment", "format_environment"]

#: Distributions whose versions are reported (name shown → distribution name), in order.
PACKAGES = {"numpy": "numpy", "torchvision": "torchvision", "PyAV": "av", "decord": "decord", "pydicom": "pydicom",
            "pylibjpeg": "pylibjpeg", "pylibjpeg-libjpeg": "pylibjpeg-libjpeg",
            "pylibjpeg-openjpeg": "pylibjpeg-openjpeg", "pylibjpeg-rle": "pylibjpeg-rle", "python-gdcm": "python-gdcm",
            "pillow": "pillow", "safetensors": "safetensors", "huggingface_hub": "huggingface_hub",
            "matplotlib": "matplotlib", "scikit-learn": "scikit-learn", "umap-learn": "umap-learn",
            "pyarrow": "pyarrow"}
#: CPU flags (from /proc/cpuinfo) that decide which precision is fast on a CPU.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_flags() -> list[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return [f for f in CPU_FLAGS if f in have]
    return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _dicom_decoders() -> dict[str, list[str]] | str:
    """Transfer syntax → decoder plugins available now (pydicom 3), or why it cannot be said."""
    try:
        decoders = importlib.import_module("pydicom.pixels.decoders")
    except ImportError:
        return "pydicom >= 3 not installed"
    out: dict[str, list[str]] = {}
    for name in sorted(dir(decoders)):
        dec = getattr(decoders, name)
        if name.endswith("Decoder") and hasattr(dec, "available_plugins") and hasattr(dec, "UID"):
            if getattr(dec.UID, "is_compressed", True):
                out[str(dec.UID.name)] = list(dec.available_plugins)
            else:
                out.setdefault("uncompressed (any VR, deflated)", ["pydicom (built in)"])
    return out


def _hf_cache() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                      os.path.join(Path.home(), ".cache"), "huggingface")
    return os.path.join(home, "hub")


def _models() -> list[dict[str, Any]]:
    from coreecho.hub import is_cached, list_models, model_info  # noqa: PLC0415

    rows = []
    for name in list_models():
        try:
            src = model_info(name)
            rows.append({"name": name, "kind": src.kind, "license": src.license, "offline": bool(is_cached(name))})
        except Exception as err:  # noqa: BLE001 - a broken entry is a fact worth reporting, not a crash
            rows.append({"name": name, "error": f"{type(err).__name__}: {err}"})
    return rows


def collect_environment() -> dict[str, Any]:
    """Everything ``coreecho env`` prints, as a JSON-ready dict (no network access).

    Example:
        >>> env = collect_environment()
        >>> sorted(env)[:3]
        ['caches', 'cpu', 'devices']
    """
    import torch  # noqa: PLC0415

    from coreecho._version import __version__  # noqa: PLC0415

    versions: dict[str, Any] = {"python": sys.version.split()[0], "coreecho": __version__, "torch": torch.__version__}
    versions.update({shown: _version(dist) for shown, dist in PACKAGES.items()})
    build = {"cuda": torch.version.cuda, "hip": getattr(torch.version, "hip", None),
             "git": (torch.version.git_version or "")[:12], "debug": bool(torch.version.debug),
             "mkldnn": bool(torch.backends.mkldnn.is_available()), "openmp": bool(torch.backends.openmp.is_available())}
    try:
        from coreecho.precision import cpu_supports_bf16, cpu_supports_fp16  # noqa: PLC0415

        fast = {"bf16": bool(cpu_supports_bf16()), "fp16": bool(cpu_supports_fp16())}
    except ImportError:  # pragma: no cover - a trimmed build
        fast = {}
    cpu = {"name": _cpu_name(), "cores": os.cpu_count(), "flags": _cpu_flags(),
           "torch_capability": torch.backends.cpu.get_cpu_capability(), "fast_low_precision": fast}
    cuda = torch.cuda.is_available()
    devices = {"cuda_available": cuda, "cuda_count": torch.cuda.device_count() if cuda else 0,
               "cuda_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
               "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    threads = {"torch_intra_op": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
               **{k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}}
    from coreecho.hub import cache_dir  # noqa: PLC0415

    caches = {"coreecho": str(cache_dir()), "huggingface": _hf_cache(),
              "offline_setting": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "COREECHO_OFFLINE") if k in os.environ}}
    return {"versions": versions, "torch_build": build, "platform": platform.platform(), "cpu": cpu,
            "devices": devices, "threads": threads, "dicom_decoders": _dicom_decoders(), "caches": caches,
            "models": _models()}


def format_environment(env: dict[str, Any]) -> list[str]:
    """The report as lines of text (what ``coreecho env`` prints)."""
    v, b, cpu, dev = env["versions"], env["torch_build"], env["cpu"], env["devices"]
    lines = ["versions"]
    lines += [f"  {k:<20} {val if val is not None else 'not installed'}" for k, val in v.items()]
    lines += ["torch build",
              f"  {'CUDA':<20} {b['cuda'] or 'none (CPU-only build)'}" + (f", HIP {b['hip']}" if b["hip"] else ""),
              f"  {'git':<20} {b['git']}   debug {b['debug']}   mkldnn {b['mkldnn']}   openmp {b['openmp']}",
              f"platform               {env['platform']}",
              "cpu",
              f"  {'name':<20} {cpu['name']} ({cpu['cores']} logical cores)",
              f"  {'flags':<20} " + (" ".join(cpu["flags"]) or "none of " + " ".join(CPU_FLAGS)
                                     if cpu["flags"] is not None else "unknown (no /proc/cpuinfo)"),
              f"  {'torch capability':<20} {cpu['torch_capability']}"]
    fast = cpu["fast_low_precision"]
    if fast:
        lines.append(f"  {'fast bf16 / fp16':<20} {'yes' if fast['bf16'] else 'no'} / {'yes' if fast['fp16'] else 'no'}"
                     "   (--precision auto uses them where documented: docs/benchmarks.md)")
    lines += ["devices",
              f"  {'CUDA':<20} " + (f"{dev['cuda_count']}: " + ", ".join(dev["cuda_names"]) if dev["cuda_available"]
                                   else "not available"),
              f"  {'MPS':<20} {'available' if dev['mps_available'] else 'not available'}",
              "threads"]
    lines += [f"  {k:<20} {val}" for k, val in env["threads"].items()]
    lines.append("DICOM decoders (transfer syntax: plugins available)")
    dec = env["dicom_decoders"]
    if isinstance(dec, str):
        lines.append(f"  {dec}")
    else:
        lines += [f"  {k}: {', '.join(p) if p else 'none'}" for k, p in dec.items()]
        if not all(dec.values()):
            lines.append("  (none: such files cannot be decoded here; pylibjpeg-libjpeg, pylibjpeg-openjpeg or "
                         "python-gdcm add plugins)")
    caches = env["caches"]
    lines += ["caches", f"  {'coreecho':<20} {caches['coreecho']}", f"  {'Hugging Face':<20} {caches['huggingface']}"]
    lines += [f"  {k:<20} {val}" for k, val in caches["offline_setting"].items()]
    lines.append("models (offline: loadable without network)")
    for m in env["models"]:
        if "error" in m:
            lines.append(f"  {m['name']:<22} error: {m['error']}")
        else:
            lines.append(f"  {m['name']:<22} {'offline' if m['offline'] else 'not installed':<14} {m['kind']:<15} "
                         f"{m['license']}")
    return lines


def add_env(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho env``."""
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.epilog = "examples:\n  coreecho env\n  coreecho env --json > env.json"
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def run_env(args: argparse.Namespace) -> int:
    """Run ``coreecho env``."""
    import json  # noqa: PLC0415

    from coreecho.cli._common import print_lines  # noqa: PLC0415

    env = collect_environment()
    return print_lines([json.dumps(env, indent=2)] if args.json else format_environment(env))
