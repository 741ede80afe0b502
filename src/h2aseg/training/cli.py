"""``h2aseg train``: train a registered network on a dataset into a run folder."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from h2aseg.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from h2aseg.data.cli import add_input_options, skipped_checks
from h2aseg.data.layouts import LAYOUTS
from h2aseg.training.losses import LOSS_KINDS
from h2aseg.training.protocols import PROTOCOLS, apply_protocol, protocol_model_options
from h2aseg.training.schedule import SCHEDULES


def _copy_options(args: argparse.Namespace, section, skip: tuple[str, ...] = ()) -> None:
    """Every config field of ``section`` that has a command-line option given (not None) takes its value.

    The option's ``dest`` is the field name (``--lr-decay`` -> ``lr_decay``), so a new setting needs only its
    field and its ``add_argument``; list-valued options are stored as lists.
    """
    for spec in fields(section):
        value = getattr(args, spec.name, None)
        if spec.name in skip or value is None:
            continue
        setattr(section, spec.name, list(value) if isinstance(value, tuple) else value)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's config: ``--config`` (YAML) if given, then every option set on the command line."""
    config = RunConfig.load(Path(args.config)) if args.config else RunConfig()
    if getattr(args, "protocol", None) is not None:
        apply_protocol(config, args.protocol, network_options=False)
    if args.data is not None:
        config.data.root = str(args.data)
    if args.cache is not None:
        config.data.cache_dir = str(args.cache)
    _copy_options(args, config.data, skip=("root", "cache_dir", "skip_content_checks"))
    if getattr(args, "skip_content_checks", None) is not None:
        config.data.skip_content_checks = list(skipped_checks(args))
    if args.model is not None:
        config.model.name = args.model
    if args.channels is not None:
        config.model.options["channels"] = list(args.channels)
    if args.model_options is not None:
        config.model.options.update(json.loads(args.model_options))
    _copy_options(args, config.train, skip=("protocol",))
    if getattr(args, "protocol", None) is not None:  # the chosen network's keywords, under the user's own
        config.model.options = {
            **protocol_model_options(args.protocol, config.model.name),
            **config.model.options,
        }
    return config


def run(args: argparse.Namespace) -> int:
    from h2aseg.training.trainer import Trainer

    out = Path(args.out)
    if args.resume and args.config is None and (out / "config.yaml").exists() and args.data is None:
        args.config = str(out / "config.yaml")
    config = config_from_args(args)
    trainer = Trainer(config, out, resume=args.resume, progress=not args.no_progress)
    result = trainer.fit()
    print(json.dumps({**result.__dict__, "skipped_cases": len(trainer.skipped)}))
    if trainer.skipped:  # listed as `h2aseg check` lists them; exit status 1 says something was left out
        print(f"{len(trainer.skipped)} case(s) skipped:", file=sys.stderr)
        for line in trainer.skipped:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def add_training_options(parser: argparse.ArgumentParser) -> None:
    d, m, t = DataConfig(), ModelConfig(), TrainConfig()
    parser.add_argument("--data", type=Path, help="dataset root (or manifest CSV/JSON)")
    parser.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        help="named preset the other options start from: "
        + "; ".join(f"{p.name}: {p.description}" for p in PROTOCOLS.values())
        + f" (default {t.protocol})",
    )
    parser.add_argument("--layout", choices=LAYOUTS, help=f"dataset layout (default {d.layout})")
    parser.add_argument(
        "--label-mode",
        choices=("binary", "multiclass"),
        help=f"binary lesion masks or HECKTOR classes (default {d.label_mode})",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="folder of preprocessed arrays, shareable between runs (default RUN_DIR/cache)",
    )
    parser.add_argument(
        "--target-spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="resample to this spacing in mm (default: the PET grid)",
    )
    parser.add_argument("--model", help=f"registered network, see `h2aseg info` (default {m.name})")
    parser.add_argument(
        "--channels", type=int, nargs="+", metavar="C", help="network channels per level, e.g. 8 16 32 64 128"
    )
    parser.add_argument(
        "--model-options",
        metavar="JSON",
        help="further network keywords as JSON, e.g. '{\"window_size\": [4, 4, 4]}'",
    )
    parser.add_argument("--epochs", type=int, help=f"epochs (default {t.epochs})")
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        help="optimizer steps per epoch (default: one pass over the training volumes)",
    )
    parser.add_argument("--batch", type=int, help=f"patches per optimizer step (default {t.batch})")
    parser.add_argument(
        "--samples-per-volume",
        type=int,
        help=f"patches cropped per loaded volume (default {t.samples_per_volume})",
    )
    parser.add_argument(
        "--patch",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help=f"training patch in voxels (default {' '.join(map(str, t.patch))})",
    )
    parser.add_argument("--lr", type=float, help=f"Adam learning rate (default {t.lr})")
    parser.add_argument("--weight-decay", type=float, help=f"Adam weight decay (default {t.weight_decay})")
    parser.add_argument(
        "--lr-decay", type=float, help=f"learning-rate factor per epoch (default {t.lr_decay})"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        help=f"exponential: lr * lr-decay^epoch; poly: nnU-Net's (1 - progress)^0.9 down to 0 at "
        f"the last epoch or the end of --max-minutes (default {t.lr_schedule})",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        default=None,
        help="channels-last memory layout (faster 3-D convolutions on CPUs)",
    )
    parser.add_argument(
        "--rotate-prob",
        type=float,
        help=f"probability of the random rotation about the axial axis per patch (default {t.rotate_prob})",
    )
    parser.add_argument(
        "--rotate-degrees",
        type=float,
        help=f"largest angle of that rotation in degrees (default {t.rotate_degrees})",
    )
    parser.add_argument(
        "--lesion-offset",
        type=float,
        help="place a crop's lesion voxel anywhere within +-F*(patch/2-1) voxels of the patch centre, "
        f"F in [0, 1]; 0 = centred crops as the release (default {t.lesion_offset})",
    )
    parser.add_argument(
        "--keep-lesion-whole",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --lesion-offset > 0, move a lesion only as far as it stays whole inside the patch "
        f"(default {t.keep_lesion_whole})",
    )
    parser.add_argument(
        "--loss",
        choices=LOSS_KINDS,
        help="paper: Eq. 5's BCE + Dice; release: the release's softmax CE + Dice with background, "
        f"for 2-class networks such as h2aseg_release (default {t.loss})",
    )
    parser.add_argument(
        "--hot-negatives-suv",
        type=float,
        help="also centre negative crops on non-lesion uptake >= this SUV "
        "(default: off, the paper's sampling)",
    )
    parser.add_argument(
        "--compile",
        metavar="BACKEND",
        help="torch.compile the training network with this backend, e.g. inductor: fused kernels, "
        "faster steps after a one-off compilation of minutes on a CPU (default: off)",
    )
    parser.add_argument(
        "--grad-clip", type=float, help="cap on the gradient norm (default: none, as the paper)"
    )
    parser.add_argument(
        "--seed", type=int, help=f"seed of initialisation, sampling and augmentation (default {t.seed})"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="stop after this wall time, still validating and saving (default: no limit)",
    )
    parser.add_argument("--val-every", type=int, help=f"validate every N epochs (default {t.val_every})")
    parser.add_argument(
        "--sw-overlap", type=float, help=f"sliding-window overlap in validation (default {t.sw_overlap})"
    )
    parser.add_argument(
        "--amp", choices=("auto", "on", "off"), help=f"mixed precision (default {t.amp}: on for CUDA)"
    )
    parser.add_argument("--device", help=f"cpu, cuda, cuda:N or auto (default {t.device})")
    parser.add_argument(
        "--num-workers", type=int, help=f"data-loading worker processes (default {t.num_workers})"
    )
    add_input_options(parser)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a network (single process, or DDP under torchrun)",
        description="Train a registered network. Settings come from --config (YAML) and then the options; "
        "the resolved settings are saved as RUN_DIR/config.yaml. Multi-process: "
        "torchrun --nproc_per_node N -m h2aseg train ...",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="run folder (config, splits, checkpoints, logs)"
    )
    parser.add_argument("--config", help="YAML config to start from (e.g. a previous RUN_DIR/config.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_training_options(parser)
    parser.set_defaults(func=run)
