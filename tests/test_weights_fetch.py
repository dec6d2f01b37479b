"""Weights by name: the published best.pth fetched from a local server that behaves like Google Drive.

The server (http.server in a thread) answers the first request with a confirmation page (an HTML form carrying
``confirm`` and ``uuid``), can cut a transfer short (Content-Length larger than what it sends, then honours
``Range``), and can serve a wrong file. The registry entry of ``coreecho-echonet`` is pointed at it, with a tiny
UniFormer standing in for UniFormer-S; the checkpoint is in the official format (``module.`` keys, the encoder's
unused 1-output head, the regressor, epoch and best error).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
import urllib.parse

import pytest
import torch

from coreecho.cli import main
from coreecho.errors import ChecksumError, ModelNotFoundError
from coreecho.hub import REGISTRY, load_model
from coreecho.hub.checks import problems
from coreecho.hub.published import PROVENANCE_NAME, status
from coreecho.hub.registry import installed_dir
from conftest import TINY_ENCODER, tiny_config

NAME = "coreecho-echonet"


def official_tiny_checkpoint(seed: int = 0, *, trained: bool = True) -> tuple[bytes, torch.nn.Module]:
    """An official-format best.pth of a tiny model (BatchNorm statistics as training leaves them when ``trained``)."""
    from coreecho import CoReEcho

    torch.manual_seed(seed)
    model = CoReEcho(tiny_config()).eval()
    if trained:
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    dim = model.embed_dim
    encoder = {f"module.{k}": v.clone() for k, v in model.encoder.state_dict().items()}
    encoder["module.head.weight"], encoder["module.head.bias"] = torch.randn(1, dim), torch.randn(1)
    ckpt = {"epoch": 3, "model": encoder, "best_error": torch.tensor(4.2),
            "regressor": {f"module.{k}": v.clone() for k, v in model.head.state_dict().items()}}
    import io

    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue(), model


class Drive:
    """A local server: confirmation page first, then the file; optionally truncated or replaced."""

    def __init__(self, payload: bytes):
        self.payload, self.truncate_once, self.stall_once, self.requests = payload, False, False, []
        drive = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                drive.requests.append((self.path, self.headers.get("Range")))
                if query.get("confirm") != ["t"] or query.get("uuid") != ["u-42"]:
                    page = (b"<html><head><title>Google Drive - Virus scan warning</title></head><body>"
                            b"<form id=\"download-form\" action=\"/download\" method=\"get\">"
                            b"<input type=\"hidden\" name=\"id\" value=\"FILE\">"
                            b"<input type=\"hidden\" name=\"export\" value=\"download\">"
                            b"<input type=\"hidden\" name=\"confirm\" value=\"t\">"
                            b"<input type=\"hidden\" name=\"uuid\" value=\"u-42\"></form></body></html>")
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                data, start = drive.payload, 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if drive.truncate_once and not rng:
                    drive.truncate_once = False
                    self.wfile.write(data[: len(data) // 3])  # then the connection closes: a cut transfer
                    self.close_connection = True
                    return
                if drive.stall_once and not rng:
                    drive.stall_once = False
                    self.wfile.write(data[: len(data) // 3])
                    self.wfile.flush()
                    drive.release.wait(30)  # then nothing: the client's timeout must end the wait
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.release = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/uc?id=FILE&export=download"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def published(monkeypatch):
    """(server, set_entry): the registry's coreecho-echonet pointed at a local server, online."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("COREECHO_OFFLINE", raising=False)
    monkeypatch.delenv("COREECHO_WEIGHTS_MIRROR", raising=False)
    payload, model = official_tiny_checkpoint()
    drive = Drive(payload)
    original = REGISTRY[NAME]

    def set_entry(**fields):
        fields = {"url": drive.url, **fields}
        entry = dataclasses.replace(original, architecture="uniformer_custom", encoder_args=dict(TINY_ENCODER),
                                    **fields)
        monkeypatch.setitem(REGISTRY, NAME, entry)
        return entry

    set_entry()
    yield drive, set_entry, model
    drive.close()


def _same_outputs(a, b):
    x = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-5)


def test_fetch_by_name_through_the_confirmation_page(published, capsys):
    drive, _, reference = published
    model = load_model(NAME, device="cpu")
    assert _same_outputs(model, reference)  # the official layout was converted, head and all
    assert [p.split("?")[0] for p, _ in drive.requests] == ["/uc", "/download"]
    err = capsys.readouterr().err
    assert err.count("CC BY-NC 4.0") == 1 and "non-commercial" in err
    assert load_model(NAME, device="cpu") is not None and len(drive.requests) == 2  # converted once, cached
    assert "CC BY-NC" not in capsys.readouterr().err
    sha = hashlib.sha256(drive.payload).hexdigest()
    record = installed_dir(NAME).parent.parent / "checksums" / f"{NAME}.sha256"
    assert record.read_text().split()[0] == sha  # first fetch recorded
    info = json.loads((installed_dir(NAME) / PROVENANCE_NAME).read_text())
    assert (info["origin"], info["source_sha256"], info["source"]) == ("fetched", sha, drive.url)
    assert not (installed_dir(NAME).parent.parent / "downloads" / NAME / "best.pth").exists()
    assert status(NAME) == "unverified"  # nothing pinned: never "verified"
    assert main(["models", "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}[NAME]
    assert row["status"] == "unverified" and row["metrics"] is None and row["available_offline"]


def test_truncated_transfer_resumes_and_a_pinned_match_is_verified(published, capsys):
    drive, set_entry, reference = published
    set_entry(sha256=hashlib.sha256(drive.payload).hexdigest(), size=len(drive.payload))
    drive.truncate_once = True
    model = load_model(NAME, device="cpu")
    assert _same_outputs(model, reference)
    files = [r for p, r in drive.requests if p.startswith("/download")]
    assert files == [None, f"bytes={len(drive.payload) // 3}-"]  # resumed where the cut transfer stopped
    assert status(NAME) == "verified"
    assert main(["models"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(NAME))
    assert "verified" in line and "unverified" not in line
    assert main(["models", "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}[NAME]
    assert row["metrics"].startswith("MAE 3.90")
    weights = installed_dir(NAME) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 1
    weights.write_bytes(bytes(data))
    assert status(NAME) == "modified"


def test_a_stalled_transfer_times_out_clearly_and_the_next_try_resumes(published, tmp_path):
    from coreecho.hub.download import download

    drive, _, _ = published
    drive.stall_once = True
    target = tmp_path / "best.pth"
    with pytest.raises(ModelNotFoundError, match=r"no data for 0\.5 s \(timeout\).*kept and the next try resumes"):
        download(drive.url, target, timeout=0.5)
    part = tmp_path / "best.pth.part"
    assert part.stat().st_size == len(drive.payload) // 3 and not target.exists()
    drive.release.set()
    download(drive.url, target, timeout=5)
    assert target.read_bytes() == drive.payload and not part.exists()
    files = [r for p, r in drive.requests if p.startswith("/download")]
    assert files == [None, f"bytes={len(drive.payload) // 3}-"]  # the second transfer resumed


def test_wrong_file_is_refused_and_not_installed(published):
    drive, set_entry, _ = published
    set_entry(sha256="0" * 64)
    with pytest.raises(ChecksumError, match="pinned"):
        load_model(NAME)
    assert status(NAME) == "not installed"
    assert not (installed_dir(NAME).parent.parent / "downloads" / NAME / "best.pth").exists()
    set_entry(size=len(drive.payload) + 1)
    with pytest.raises(ChecksumError, match="bytes"):
        load_model(NAME)
    set_entry()  # no pin: the first fetch is recorded, a later different file is refused
    load_model(NAME)
    import shutil

    shutil.rmtree(installed_dir(NAME))
    drive.payload = official_tiny_checkpoint(seed=5)[0]
    with pytest.raises(ChecksumError, match="first download"):
        load_model(NAME)
    assert status(NAME) == "not installed"


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "COREECHO_OFFLINE", "no-network"])
def test_offline_fails_fast_with_the_manual_route(published, monkeypatch, how):
    drive, set_entry, _ = published
    if how == "no-network":
        import socket

        with socket.socket() as s:  # a port nobody listens on: connection refused
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        set_entry(url=f"http://127.0.0.1:{port}/uc?id=FILE")
    else:
        monkeypatch.setenv(how, "1")
    with pytest.raises(ModelNotFoundError) as err:
        load_model(NAME)
    msg = str(err.value)
    assert "coreecho convert best.pth --install coreecho-echonet" in msg and "--model phantom-tiny" in msg
    assert (how in msg) if how != "no-network" else "cannot connect" in msg
    assert drive.requests == []


def test_mirrors_url_file_and_hub_repo(published, monkeypatch, tmp_path):
    from hubcache import add_to_hf_cache

    drive, set_entry, reference = published
    good_url = drive.url
    set_entry(url="http://127.0.0.1:9/nowhere")  # the authors' link is down; mirrors stand in
    monkeypatch.setenv("COREECHO_WEIGHTS_MIRROR", good_url)
    assert _same_outputs(load_model(NAME, device="cpu"), reference)
    import shutil

    monkeypatch.delenv("COREECHO_WEIGHTS_MIRROR")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local file works offline
    (tmp_path / "best.pth").write_bytes(drive.payload)
    for mirror in (tmp_path / "best.pth", tmp_path, f"file://{tmp_path / 'best.pth'}"):
        shutil.rmtree(installed_dir(NAME))
        assert _same_outputs(load_model(NAME, device="cpu", mirror=mirror), reference)
    shutil.rmtree(installed_dir(NAME))
    add_to_hf_cache(tmp_path / "hf", "someone/coreecho-weights", {"best.pth": drive.payload})
    model = load_model(NAME, device="cpu", mirror="someone/coreecho-weights", cache_dir=tmp_path / "hf")
    assert _same_outputs(model, reference) and status(NAME) == "unverified"


def test_user_converted_fake_is_never_verified(published, tmp_path, capsys):
    _, set_entry, _ = published
    untrained, _ = official_tiny_checkpoint(seed=1, trained=False)
    (tmp_path / "fake.pth").write_bytes(untrained)
    assert main(["convert", str(tmp_path / "fake.pth"), "--install", NAME]) == 1
    assert "initial values" in capsys.readouterr().err and status(NAME) == "not installed"
    fake, _ = official_tiny_checkpoint(seed=2)  # random weights with plausible statistics
    (tmp_path / "fake.pth").write_bytes(fake)
    set_entry(sha256="ab" * 32)  # even with a pinned hash, a different file is not verified
    assert main(["convert", str(tmp_path / "fake.pth"), "--install", NAME]) == 0
    assert "user-converted" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}[NAME]
    assert row["status"] == "user-converted" and row["metrics"] is None


def test_structural_checks_name_what_is_wrong(tiny_model):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    for mod in tiny_model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_var.fill_(2.0)
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    assert problems(tiny_model, state) == []
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    bad = dict(state, **{key: state[key].double()})
    assert "dtype" in problems(tiny_model, bad)[0]
    bad = dict(state, **{key: state[key].clone().fill_(float("nan"))})
    assert "NaN" in problems(tiny_model, bad)[0]
    bad = dict(state, extra=torch.zeros(1))
    assert "unexpected" in problems(tiny_model, bad)[0]
    bad = {k: v for k, v in state.items() if k != key}
    assert "missing" in problems(tiny_model, bad)[0]


def test_calibrate_the_published_model_in_one_command(published, tmp_path, capsys):
    from coreecho.data.layouts import write_echonet_layout

    drive, _, _ = published
    root = tmp_path / "EchoNet-Dynamic"
    write_echonet_layout(root, 28, seed=3, splits=(2, 24, 2), n_frames=(40, 48), progress=False)
    assert main(["calibrate", NAME, "--data", str(root), "--split", "val", "--detector", "knn"]) == 0
    out = capsys.readouterr()
    assert "calibrated on 24 videos" in out.out and out.err.count("CC BY-NC 4.0") == 1
    folder = installed_dir(NAME)
    assert (folder / "calibration.safetensors").is_file()
    model = load_model(NAME, device="cpu")
    assert model.calibration is not None and model.shift_detector is not None
    assert status(NAME) == "unverified"  # the weights are still those converted at installation
    assert len([p for p, _ in drive.requests if p.startswith("/download")]) == 1
    # a bundled model is never calibrated in place: it needs --out
    assert main(["calibrate", "phantom-tiny", "--data", str(root), "--split", "val"]) == 2
    assert "--out FOLDER" in capsys.readouterr().err
