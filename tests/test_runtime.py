"""keep_freed_memory: freed tensor memory is reused instead of being faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = r"""
import resource, sys
import torch
from h2aseg.runtime import keep_freed_memory
applied = keep_freed_memory()
def faults_of_one_round():  # a training step in miniature: large tensors made and freed in turn
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(32 * 2**20)  # 128 MB, above glibc's largest mmap threshold
    y = torch.ones(12 * 2**20)
    del x
    z = torch.ones(16 * 2**20)
    del y, z
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(8):  # warm-up: the heap grows to the pattern's high-water mark
    faults_of_one_round()
print(int(applied), sum(faults_of_one_round() for _ in range(3)))
"""


def probe(env_extra: dict) -> tuple[bool, int]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return bool(int(applied)), int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_freed_tensor_memory_is_reused_without_page_faults():
    system_applied, system_faults = probe({"H2ASEG_SYSTEM_MALLOC": "1"})
    kept_applied, kept_faults = probe({})
    assert not system_applied and kept_applied
    # 3 rounds × 240 MB = 180,000 pages of 4 kB: faulted in every round by default, reused once kept.
    assert system_faults > 100_000
    assert kept_faults < 5_000
