"""The trained network outside PyTorch: ONNX (and TorchScript) export with a parity check.

The exported graph is the eval-mode network on one patch (the training patch, fixed spatial size) with a
dynamic batch of patches; sliding-window blending, resampling and SUV conversion stay outside (the
``preprocessing.json`` of a model package says what to apply). Inputs ``ct`` and ``pet``, each
``(N, 1, H, W, D)`` scaled as in training; outputs ``logits`` ``(N, K, H, W, D)`` and ``probabilities``
(sigmoid for K = 1, softmax over K > 1).

Exporter: PyTorch's TorchScript-based ONNX exporter (``dynamo=False``, opset 17), which needs only the
``onnx`` package; the Dynamo exporter would also need ``onnxscript``. The trace fixes every shape
computation of the network to the patch (MCSA window counts, TAMW up-sampling sizes), which is why the
spatial size is fixed and only the batch is dynamic.

After export, :func:`check_parity` runs ONNX Runtime (optional: ``pip install onnxruntime``) and PyTorch on a
random batch of two patches and reports the largest absolute difference of logits and probabilities
(``--tolerance``, default 1e-4).

Which registered networks export (``python -m h2aseg.export.onnx_export`` re-checks them all on tiny
configurations; results in the README): all of them. Their attention is matmul/softmax on reshaped tensors,
which ONNX has. Where an instance norm follows a reshape whose sizes are computed at run time
(``h2aseg_release``'s BDSA, MONAI's SwinUNETR), the exporter cannot see the channel count that ONNX's
InstanceNormalization needs; the export is then retried with those norms written as mean/variance arithmetic
(:class:`InstanceNormByMoments`, same values up to rounding).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from h2aseg.atomic import atomic_path
from h2aseg.errors import ConfigError

__all__ = ["PatchNetwork", "export_onnx", "export_torchscript", "check_parity", "OPSET"]

logger = logging.getLogger(__name__)
OPSET = 17


class PatchNetwork(nn.Module):
    """Eval-mode wrapper: (ct, pet) -> (logits, probabilities) of the full-resolution output P^1."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(ct, pet)
        if isinstance(logits, (list, tuple)):  # a network that returns deep-supervision outputs anyway
            logits = logits[0]
        probabilities = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
        return logits, probabilities


class InstanceNormByMoments(nn.Module):
    """Instance norm written with mean and variance, for graphs where ONNX cannot see the channel count.

    y = (x − mean_xyz(x)) / sqrt(var_xyz(x) + eps) · γ + β, per sample and channel (biased variance, as
    ``nn.InstanceNorm3d`` without running statistics computes it).
    """

    def __init__(self, norm: nn.modules.instancenorm._InstanceNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = (x - mean).pow(2).mean(dim=dims, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            shape = (1, -1) + (1,) * len(dims)
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y


def _moments_norms(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose instance norms (without running statistics) are
    :class:`InstanceNormByMoments`."""
    import copy

    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.instancenorm._InstanceNorm) and not child.track_running_stats:
                setattr(module, child_name, InstanceNormByMoments(child))
    return model


def _example(patch: Sequence[int], batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 1, *[int(s) for s in patch])
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def export_onnx(model: nn.Module, patch: Sequence[int], out: Path) -> Path:
    """Export the eval-mode ``model`` for patches of size ``patch`` with a dynamic batch to ``out``."""
    try:
        import onnx  # noqa: F401 - the exporter needs it
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'h2aseg[onnx]'") from None
    try:
        data = _export_bytes(model.cpu(), patch)
    except Exception as err:  # noqa: BLE001 - exporter errors come in many types
        if "instance_norm for unknown channel size" not in str(err):
            raise _refusal(err) from None
        logger.info("instance norms after run-time reshapes: exporting them as mean/variance arithmetic")
        try:
            data = _export_bytes(_moments_norms(model.cpu()), patch)
        except Exception as err2:  # noqa: BLE001
            raise _refusal(err2) from None
    with atomic_path(Path(out)) as tmp:
        Path(tmp).write_bytes(data)
    return Path(out)


def _refusal(err: Exception) -> ConfigError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConfigError(f"this network does not export to ONNX ({type(err).__name__}: {first[:200]})")


@contextlib.contextmanager
def _quiet_stdout():
    """Standard output closed at the file-descriptor level (the exporter's C++ side writes graphs there)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _export_bytes(model: nn.Module, patch: Sequence[int]) -> bytes:
    wrapper = PatchNetwork(model).eval()
    buffer = io.BytesIO()
    dynamic = {name: {0: "batch"} for name in ("ct", "pet", "logits", "probabilities")}
    with torch.no_grad(), _quiet_stdout():  # the exporter prints whole graphs on errors
        torch.onnx.export(
            wrapper,
            _example(patch, 1),
            buffer,
            input_names=["ct", "pet"],
            output_names=["logits", "probabilities"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def export_torchscript(model: nn.Module, patch: Sequence[int], out: Path) -> Path:
    """TorchScript trace of the same wrapper (fixed patch, any batch); load with ``torch.jit.load``."""
    wrapper = PatchNetwork(model.cpu()).eval()
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, _example(patch, 1), check_trace=False)
    with atomic_path(Path(out)) as tmp:
        torch.jit.save(traced, str(tmp))
    return Path(out)


def check_parity(
    model: nn.Module, patch: Sequence[int], path: Path, batch: int = 2, kind: str = "onnx"
) -> float:
    """Largest |difference| between PyTorch and the exported file, over logits and probabilities,
    on random patches.

    ``batch`` differs from the export batch (1) on purpose: it checks that the batch axis is dynamic.
    """
    ct, pet = _example(patch, batch, seed=1)
    with torch.no_grad():
        expected = [t.numpy() for t in PatchNetwork(model.cpu())(ct, pet)]
    if kind == "torchscript":
        with torch.no_grad():
            got = [t.numpy() for t in torch.jit.load(str(path))(ct, pet)]
    else:
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError("the ONNX parity check needs onnxruntime: pip install 'h2aseg[onnx]'") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {"ct": ct.numpy(), "pet": pet.numpy()}
        names = [
            i.name for i in session.get_inputs()
        ]  # a single-modality network keeps only the input it uses
        got = session.run(["logits", "probabilities"], {name: feeds[name] for name in names})
    for mine, theirs in zip(got, expected):
        if mine.shape != theirs.shape:
            raise ConfigError(f"{path}: output shape {mine.shape} differs from PyTorch's {theirs.shape}")
    return float(max(np.abs(a - b).max() for a, b in zip(got, expected)))


def _survey() -> None:
    """Export every registered network on a tiny configuration and print whether it exports and its parity."""
    import tempfile

    from h2aseg.models.registry import build_model, get_entry, list_models

    tiny = {
        "h2aseg": {"channels": (2, 4, 4, 8, 8), "window_size": (4, 4, 4)},
        "swinunetr": {"feature_size": 12, "patch_size": (64, 64, 32)},
        "unetr": {"hidden_size": 48, "mlp_dim": 96, "num_heads": 4},
    }
    for name in list_models():
        options = dict(tiny["h2aseg"] if name.startswith("h2aseg") else tiny.get(name, {}))
        patch = options.get("patch_size", (32, 32, 32))
        if get_entry(name).uses_patch_size:
            options["patch_size"] = patch
        else:
            options.pop("patch_size", None)
        try:
            model = build_model(name, **options).eval()
        except Exception as err:  # noqa: BLE001
            print(f"{name}: not built with the tiny options ({err})")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = export_onnx(model, patch, Path(tmp) / "m.onnx")
                print(f"{name}: exports, max |diff| {check_parity(model, patch, path):.2e}")
            except ConfigError as err:
                print(f"{name}: {err}")


if __name__ == "__main__":
    _survey()
