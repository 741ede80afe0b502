"""Is ``h2aseg_release`` the authors' network? Compare it with the release's own code, weights copied through
the importer.

    python benchmarks/release_equivalence.py /path/to/H2ASeg-release [--patch 64 64 32] [--seed 0]

The release (GitHub JinPLu/H2ASeg; its ``model/`` imports ``einops``) is imported from the given checkout,
never vendored. Both networks are built at ``--patch`` with 1 input channel and 2 classes; the release's
randomly initialised weights go through :func:`h2aseg.models.release_import.convert_state_dict` into ours,
and back through ``export_state_dict``. Printed (Markdown):

- the largest absolute difference of the five eval-mode outputs on random inputs (goal ≤ 1e-5 in float32);
- training mode: the loss of the release's ``train.py`` (CE + Dice with background, weights 5..1) on the
  release's outputs against h2aseg's ``DeepSupervisionLoss(kind="release")`` on ours, both under one seed so
  that dropout draws the same masks, and the largest gradient difference.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

from h2aseg.models.registry import build_model
from h2aseg.models.release_import import convert_state_dict, export_state_dict, h2aseg_to_release
from h2aseg.training.losses import PAPER_WEIGHTS, DeepSupervisionLoss


def release_network(release_dir: Path, patch: tuple[int, int, int]) -> torch.nn.Module:
    """The release's ``H2ASeg(patch, in_channels=1, n_classes=2)``, imported from its checkout."""
    sys.path.insert(0, str(release_dir))
    from model.H2ASeg import H2ASeg  # noqa: PLC0415 - the release's own module, only on this path

    return H2ASeg(patch_size=patch, in_channels=1, n_classes=2)


def release_loss(outputs, labels: torch.Tensor) -> torch.Tensor:
    """The loss of the release's ``train.py`` (lines 85-88 and 207-213), written out here."""
    from monai.losses import DiceLoss

    dice = DiceLoss(include_background=True, to_onehot_y=True, softmax=True)
    ce = torch.nn.CrossEntropyLoss()
    terms = [ce(out, labels.squeeze(1)) + dice(input=out, target=labels) for out in outputs]
    return sum(w * t for w, t in zip(PAPER_WEIGHTS, terms))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "release_dir", type=Path, help="checkout of github.com/JinPLu/H2ASeg (the folder holding model/)"
    )
    parser.add_argument("--patch", type=int, nargs=3, default=(64, 64, 32))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings(
        "ignore"
    )  # the release's heads normalise 2C channels with InstanceNorm3d(n_classes)
    patch = tuple(args.patch)
    torch.manual_seed(args.seed)
    theirs = release_network(args.release_dir, patch)
    ours = build_model("h2aseg_release", patch_size=patch)
    ours.load_state_dict(convert_state_dict(theirs.state_dict(), ours, source="release"))
    back = export_state_dict(ours)
    round_trip = back.keys() == theirs.state_dict().keys() and all(
        torch.equal(back[k], v) for k, v in theirs.state_dict().items()
    )
    n_theirs, n_ours = (sum(p.numel() for p in m.parameters()) for m in (theirs, ours))

    gen = torch.Generator().manual_seed(args.seed + 1)
    ct, pet = (torch.randn(args.batch, 1, *patch, generator=gen) for _ in range(2))
    labels = (torch.rand(args.batch, 1, *patch, generator=gen) > 0.9).long()

    theirs.eval(), ours.eval()
    with torch.no_grad():
        start = time.perf_counter()
        out_theirs = theirs(ct, pet)
        t_theirs = time.perf_counter() - start
        start = time.perf_counter()
        out_ours = ours(ct, pet, deep_supervision=True)
        t_ours = time.perf_counter() - start
    eval_diffs = [float((a - b).abs().max()) for a, b in zip(out_theirs, out_ours)]
    scale = max(float(o.abs().max()) for o in out_theirs)

    theirs.train(), ours.train()
    torch.manual_seed(args.seed + 2)
    loss_theirs = release_loss(theirs(ct, pet), labels)
    torch.manual_seed(args.seed + 2)
    loss_ours = DeepSupervisionLoss(kind="release")(ours(ct, pet), labels)
    loss_theirs.backward()
    loss_ours.backward()
    grads_theirs = dict(theirs.named_parameters())
    grad_diff = max(
        float((p.grad - grads_theirs[h2aseg_to_release(k)].grad).abs().max())
        for k, p in ours.named_parameters()
    )
    grad_scale = max(float(p.grad.abs().max()) for p in theirs.parameters())

    print(f"| patch | {patch} (batch {args.batch}, seed {args.seed}, float32, torch {torch.__version__}) |")
    print("|---|---|")
    print(f"| parameters release / h2aseg_release | {n_theirs:,} / {n_ours:,} |")
    print(f"| state dict round trip (import, export) | {'identical' if round_trip else 'DIFFERENT'} |")
    print(f"| eval: max abs difference P^1..P^5 | {', '.join(f'{d:.2e}' for d in eval_diffs)} |")
    print(f"| eval: largest difference / largest output | {max(eval_diffs):.2e} / {scale:.2f} |")
    print(f"| eval goal ≤ 1e-5 | {'met' if max(eval_diffs) <= 1e-5 else 'NOT met'} |")
    print(
        f"| train-mode loss release / h2aseg (same seed, dropout 0.5) | {loss_theirs.item():.7f} / "
        f"{loss_ours.item():.7f} |"
    )
    print(f"| train-mode loss difference | {abs(loss_theirs.item() - loss_ours.item()):.2e} |")
    print(f"| train-mode max gradient difference / largest gradient | {grad_diff:.2e} / {grad_scale:.2e} |")
    print(f"| eval forward seconds release / h2aseg_release (one run each) | {t_theirs:.2f} / {t_ours:.2f} |")
    return 0 if max(eval_diffs) <= 1e-5 and round_trip else 1


if __name__ == "__main__":
    sys.exit(main())
