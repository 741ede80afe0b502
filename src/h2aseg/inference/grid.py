"""Which grid ``h2aseg predict`` writes labels on, and the input options it shares with the data verbs.

``--grid pet`` (default for AutoPET, nnU-Net and manifests) writes each label on the case's original PET
grid. ``--grid ct`` writes it on the case's CT grid, where HECKTOR labels lie and where the HECKTOR 2022
challenge scores predictions; it is the default for the HECKTOR layout, so ``predict`` → ``evaluate``
works as documented. The label is first brought back to the PET grid (exact when the processing grid is
the PET grid, the default: it is a crop of it) and then resampled onto the CT grid by nearest neighbour;
saved probabilities stay on the PET grid. The DICOM outputs (SEG and RTSTRUCT reference the PET series)
need the PET grid: with those, an implicit ``ct`` falls back to ``pet`` (said on stdout) and an explicit
``--grid ct`` is refused. Post-processing runs on the label's grid (the SUVmax filter reads the PET on it).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from h2aseg.data.io import read_ct, read_geometry
from h2aseg.data.layouts import Case, detect_layout
from h2aseg.errors import ConfigError

__all__ = ["GRIDS", "add_grid_option", "choose_grid", "OnGrid", "apply_input_options"]

GRIDS = ("pet", "ct")


def add_grid_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grid",
        choices=GRIDS,
        default=None,
        help="write labels on each case's PET grid or CT grid (default: ct for the HECKTOR layout, "
        "whose labels and challenge scoring use the CT grid; pet otherwise)",
    )
    parser.add_argument(
        "--ct-series",
        default=None,
        metavar="UID",
        help="SeriesInstanceUID of the CT when --ct is a DICOM folder holding several CT series",
    )
    parser.add_argument(
        "--pet-series",
        default=None,
        metavar="UID",
        help="SeriesInstanceUID of the PET when --pet is a DICOM folder holding several PT series",
    )


def _needs_pet_grid(args: argparse.Namespace) -> str | None:
    formats = ",".join(getattr(args, "format", None) or [])
    if "dicom-seg" in formats or "rtstruct" in formats:
        return "DICOM SEG/RTSTRUCT outputs reference the PET series"
    return None


def choose_grid(args: argparse.Namespace) -> tuple[str, str | None]:
    """(grid, note): ``--grid`` if given, else ``ct`` for HECKTOR input and ``pet`` otherwise.

    Raises:
        ConfigError: ``--grid ct`` with an output that needs the PET grid.
    """
    reason = _needs_pet_grid(args)
    if args.grid is not None:
        if args.grid == "ct" and reason:
            raise ConfigError(f"--grid ct cannot be used here: {reason}; use --grid pet")
        return args.grid, None
    layout = args.layout
    if layout == "auto" and getattr(args, "input", None) and not (args.ct or args.pet):
        layout = detect_layout(Path(args.input))
    if layout != "hecktor":
        return "pet", None
    if reason:
        return "pet", f"labels written on the PET grid ({reason}); HECKTOR labels lie on the CT grid"
    return "ct", "HECKTOR layout: labels written on each case's CT grid, as its labels (--grid pet to change)"


def _geometry_reference(path: Path, series_uid: str | None) -> sitk.Image:
    """An empty image with the geometry of a CT file's header (a DICOM series is read in full)."""
    path = Path(path)
    if path.is_dir():
        return read_ct(path, series_uid=series_uid)
    return read_geometry(path)


@dataclass
class OnGrid:
    """A label writer (``PredictOptions.write_label``) that first moves the PET-grid label to ``grid``."""

    write: Callable[[sitk.Image, Case, Path], Path]
    grid: str = "pet"

    def __call__(self, label: sitk.Image, case: Case, out_dir: Path) -> Path:
        if self.grid == "ct":
            ref = _geometry_reference(case.ct, case.ct_series)
            label = sitk.Resample(
                label, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID()
            )
        return self.write(label, case, out_dir)

    def __getattr__(self, name: str):
        if name == "write":
            raise AttributeError(name)
        return getattr(self.write, name)  # e.g. the LabelWriter's records and summary


def apply_input_options(loaded, args: argparse.Namespace) -> None:
    """Content-check opt-outs and the voxel limit: the command line's,
    else those the model was trained with."""
    from h2aseg.data.cli import skipped_checks

    data = loaded.config.data
    skip = (
        skipped_checks(args)
        if getattr(args, "skip_content_checks", None) is not None
        else tuple(getattr(data, "skip_content_checks", ()) or ())
    )
    limit = (
        args.max_voxels
        if getattr(args, "max_voxels", None) is not None
        else getattr(data, "max_voxels", None)
    )
    loaded.preprocess = dataclasses.replace(loaded.preprocess, skip_checks=skip, max_voxels=limit)
