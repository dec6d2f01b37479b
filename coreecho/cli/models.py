"""``coreecho models`` (what can be loaded) and ``coreecho convert`` (official ``.pth`` → coreecho folder).

Example:
    $ coreecho models --json
    $ coreecho convert best.pth --install coreecho-echonet
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coreecho.cli._common import UsageError, print_lines

__all__ = ["add_models", "run_models", "add_convert", "run_convert"]


def add_models(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho models``."""
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_models(args: argparse.Namespace) -> int:
    """Run ``coreecho models``."""
    import json

    from coreecho.hub import is_cached, list_models, model_info
    from coreecho.hub.published import status

    rows = []
    for name in list_models():
        src = model_info(name)
        where = {"hub-checkpoint": f"hf://{src.repo_id}/{src.filename}", "download": src.url or "-",
                 "bundled": "inside the package"}.get(src.kind, src.url or "-")
        # "verified" only for a pinned sha256 match; the paper's metrics only beside a verified copy
        state = status(name) if src.kind == "download" else ("bundled" if src.kind == "bundled" else
                                                              "checked on use")
        rows.append({"name": name, "role": src.role, "source": where, "license": src.license,
                     "available_offline": is_cached(name), "status": state, "description": src.description,
                     "metrics": src.metrics if state == "verified" else None})
    if args.json:
        lines = [json.dumps(rows, indent=2)]
    else:
        lines = [f"{'name':<22} {'role':<8} {'offline':<8} {'status':<15} {'license':<28} source"]
        for r in rows:
            lines.append(f"{r['name']:<22} {r['role']:<8} {('yes' if r['available_offline'] else 'no'):<8} "
                         f"{r['status']:<15} {r['license']:<28} {r['source']}")
            lines.append(f"{'':<22} {r['description']}" + (f"; {r['metrics']}" if r["metrics"] else ""))
            if r["status"] in ("unverified", "user-converted", "modified"):
                lines.append(f"{'':<22} {r['status']}: not checked against a pinned sha256 of the published file, "
                             "so no published metrics are claimed for it")
        lines.append("\nload any of them with coreecho.load_model(NAME) or --model NAME; folders, .pth files and "
                     "Hub repo ids work too. phantom-tiny runs offline now (synthetic training data, not for "
                     "clinical use).")
    return print_lines(lines)


def add_convert(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho convert``."""
    p.add_argument("src", help="official CoReEcho checkpoint (best.pth)")
    p.add_argument("out_dir", nargs="?", help="folder to write config.json + model.safetensors + README.md")
    p.add_argument("--install", metavar="NAME", help="install into coreecho's cache under a registry name "
                   "(e.g. coreecho-echonet) so that --model NAME works offline")


def run_convert(args: argparse.Namespace) -> int:
    """Run ``coreecho convert``."""
    from coreecho.hub import convert_checkpoint, list_models, model_info

    if not args.out_dir and not args.install:
        raise UsageError("give OUT_DIR, --install NAME, or both")
    if args.install and (args.install not in list_models() or model_info(args.install).kind != "download"):
        names = [n for n in list_models() if model_info(n).kind == "download"]
        raise UsageError(f"--install takes a registered name of a published checkpoint ({', '.join(names)}), "
                         f"got {args.install!r}")
    if args.out_dir:
        out = Path(args.out_dir)
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: OUT_DIR exists and is not a folder; give a folder name")
        src = Path(args.src)
        if src.exists() and (out.resolve() == src.resolve() or src.resolve().parent == out.resolve() and
                             src.name in ("config.json", "model.safetensors", "README.md")):
            raise UsageError(f"{out}: writing there would overwrite the input {src}; choose another OUT_DIR")
    if args.out_dir:
        print(f"wrote {convert_checkpoint(args.src, args.out_dir)}")
    if args.install:
        from coreecho.hub.published import install_checkpoint, status

        out = install_checkpoint(args.install, args.src, origin="user-converted")  # checked structurally
        print(f"installed {out} ({status(args.install)})")
    return 0
