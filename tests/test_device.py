"""The one device resolver (ldp.device) and the one file hash (ldp.fsutil.sha256_file), shared across the core."""

import hashlib

import pytest
import torch

import ldp.blurmap.estimate
import ldp.data.download
import ldp.deblur
import ldp.evaluate
from ldp.device import DeviceError, resolve_device
from ldp.fsutil import HASH_CHUNK, sha256_file


def test_resolve_device_auto_cpu_and_errors_name_the_setting(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"^evaluate\.device: 'cuda:1' requested but CUDA is not available$"):
        resolve_device("cuda:1", "evaluate.device")
    with pytest.raises(DeviceError, match=r"^train\.device: 'gpu' is not a device \(use auto, cpu, cuda or cuda:N\)$"):
        resolve_device("gpu", "train.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match="'cuda:3' requested but this machine has 1 CUDA device"):
        resolve_device("cuda:3")


def test_one_resolver_and_one_hash_everywhere():
    assert ldp.evaluate.resolve_device is ldp.blurmap.estimate.resolve_device is ldp.deblur.resolve_device \
        is resolve_device
    assert ldp.evaluate.sha256_file is ldp.data.download.sha256_file is sha256_file
    assert not hasattr(ldp.data.download, "sha256_of")


def test_sha256_file_matches_hashlib_across_blocks(tmp_path):
    data = bytes(range(256)) * (HASH_CHUNK // 256 * 2 + 3)  # two full blocks and a partial one
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
