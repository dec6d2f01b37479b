"""coreecho.allocator: freed activation buffers stay in the process, so forward passes stop page-faulting."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc's mallopt")

# Minor page faults of the fourth to sixth forward passes of a one-block-per-stage UniFormer on a 36x112x112 clip
# (UniFormer-S's activation sizes): with glibc's defaults, its larger buffers are mapped and faulted in anew each pass.
CHILD = r"""
import resource
import torch
from coreecho.allocator import keep_freed_memory
from coreecho.models.uniformer import UniFormer
applied = keep_freed_memory()
torch.manual_seed(0)
enc, x = UniFormer(depth=(1, 1, 1, 1)).eval(), torch.randn(1, 3, 36, 112, 112)
with torch.inference_mode():
    for _ in range(3):
        enc(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        enc(x)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(keep: str) -> tuple[bool, int]:
    env = {**os.environ, "COREECHO_KEEP_FREED_MEMORY": keep}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_reused_buffers_cost_no_page_faults_and_the_switch_turns_it_off():
    applied, faults = _faults("1")
    off, faults_off = _faults("0")
    assert applied and not off
    assert faults_off > 3000  # glibc's defaults: about 7000 faults per pass on this machine
    assert faults < faults_off / 10  # kept: the heap's memory is reused (0 faults per pass here)


def test_idempotent_in_process():
    from coreecho.allocator import keep_freed_memory

    first = keep_freed_memory()
    assert keep_freed_memory() is first
