"""Issue 11, the smaller fixes: each test failed before its fix."""

from __future__ import annotations

import os
import stat

import pytest

from h2aseg.atomic import atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writes_get_the_umask_permissions_not_0600(tmp_path, umask_022):
    path = atomic_write_text(tmp_path / "report.md", "hello\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # before: 0o600 (mkstemp's mode kept)
    os.umask(0o027)
    assert stat.S_IMODE(atomic_write_text(tmp_path / "other.md", "x").stat().st_mode) == 0o640


def test_atomic_rewrite_keeps_the_mode_of_the_file_it_replaces(tmp_path, umask_022):
    path = tmp_path / "shared.csv"
    path.write_text("old")
    path.chmod(0o664)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o664


def test_atomic_write_fsyncs_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    atomic_write_text(tmp_path / "a.txt", "data")
    assert calls[:2] == ["fsync", "replace"]


def test_network_without_mcsa_accepts_patches_only_mcsa_would_refuse():
    from h2aseg.errors import ConfigError
    from h2aseg.models.h2aseg import H2ASeg

    with pytest.raises(ConfigError):  # with MCSA the level-3 map (12, 12, 8) cannot be tiled by (8, 8, 4)
        H2ASeg(channels=(2, 2, 2, 2, 2), patch_size=(48, 48, 32))
    net = H2ASeg(channels=(2, 2, 2, 2, 2), use_mcsa=False, patch_size=(48, 48, 32))  # before: the same error
    assert net.patch_size == (48, 48, 32) and len(net.mcsa) == 0
