"""Analytic PET/CT phantoms: the canvas, patient settings, and the decoy and lesion primitives.

The whole-body and head-and-neck anatomy built from them is in :mod:`h2aseg.data.anatomy`.

Anatomy is laid out in a *canonical* frame in mm (x: patient right → left, y: anterior → posterior,
z: feet → head, origin at the field centre): 256 × 256 × 384 mm for the whole-body (AutoPET-like)
phantom, 224 × 224 × 208 mm for the head-and-neck (HECKTOR-like) one. A field of another size is
mapped onto the canonical frame, so small test volumes hold a shrunk but complete body.

What makes the cohort need both modalities (docs/architecture.md §6):

- organs that are hot on PET: brain, myocardium (variable), kidneys, bladder, liver/spleen just
  below the SUV 2.5 threshold (noise pushes parts above it), tonsils and salivary glands;
- **decoys** — benign FDG-avid tissue that looks like a lesion on PET and differs on CT, placed where
  lesions also occur: brown fat (hot blobs of fat density −95…−55 HU in the neck, supraclavicular,
  axillary and paravertebral fat where nodes sit), hot bowel (a hot wall around air or fluid), hot
  muscles (uptake along a whole muscle: psoas, sternocleidomastoid, pectoralis), inflamed joints
  (a hot ring around a humeral or femoral head);
- **lesions** of soft-tissue density (never fat or air): nodes in fat (clearly seen on CT), lung
  nodules, liver metastases and oropharyngeal primaries only 10–30 HU from their surroundings
  (barely seen on CT); sizes from a :class:`LesionSizes` preset (below); ellipsoidal, lobulated or
  bumpy; SUV peak log-uniform in the preset's range (GTVp 6–20, GTVn 3–14); a share with a necrotic
  core (rim uptake).

Whole-body lesion sizes (``LESION_SIZE_PRESETS``; volume = the ellipsoid 4/3·π·r³ before bumps and lobes):

- ``realistic`` (the default): volume log-normal, median 2.5 ml, log-sd 1.1, kept in 0.3–150 ml, so
  about 85 % of lesions lie between 0.5 and 10 ml and 10 % above (a tail of bulky ones). Real FDG PET/CT
  oncology cohorts are dominated by small nodes and metastases of a few ml with some bulky masses, and the
  lesions segmentation networks miss on autoPET are the small, low-uptake ones (lesion-level analyses such
  as Haque et al., Comput Biol Med 2025, cited in the issue that introduced these presets). The median and
  spread are our choice within that picture, not fitted to a published histogram.
- ``small``: harder — median 1.5 ml, log-sd 0.9, kept in 0.3–17 ml, painted SUV peak 4–20 (the PET shows less
  after the scanner's blur: on a 60-study cohort at 4 mm, SUVmax median 6.0 against a painted median of 8.9).
  HECKTOR-like head-and-neck lesions keep their own sizes.

``h2aseg synth --lesion-median-ml/--lesion-max-ml/--lesion-suv`` change one setting of a preset
(:meth:`LesionSizes.with_overrides`).
- ``legacy``: the first version's radii (70 % 11–24 mm, 30 % 3–11 mm, i.e. mostly 6–58 ml); kept so the
  earlier demo cohort can be written again byte for byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from h2aseg.constants import AIR_HU

__all__ = [
    "Canvas",
    "PatientParams",
    "patient_params",
    "brown_fat",
    "bowel_loop",
    "joint",
    "muscle",
    "lesion",
    "LesionSizes",
    "LESION_SIZE_PRESETS",
]

FAT_HU, MUSCLE_HU, SOFT_HU, LUNG_HU = -100.0, 50.0, 38.0, -850.0


@dataclass
class PatientParams:
    """Patient-level settings shared by all studies of one patient."""

    width: float  # body width factor
    depth: float  # body depth factor
    fat_mm: float  # subcutaneous fat thickness
    ct_noise_hu: float
    pet_noise: float  # variance per SUV before the post-filter
    fwhm_mm: float  # scanner PSF
    weight_kg: float
    dose_mbq: float
    uptake_min: float
    jitter: np.ndarray = field(default_factory=lambda: np.zeros(3))


def patient_params(rng: np.random.Generator) -> PatientParams:
    return PatientParams(
        width=rng.uniform(0.84, 1.0),
        depth=rng.uniform(0.8, 1.08),
        fat_mm=rng.uniform(6.0, 22.0),
        ct_noise_hu=rng.uniform(8.0, 18.0),
        pet_noise=rng.uniform(0.15, 0.35),
        fwhm_mm=rng.uniform(5.0, 7.0),
        weight_kg=rng.uniform(50.0, 105.0),
        dose_mbq=rng.uniform(200.0, 370.0),
        uptake_min=rng.uniform(55.0, 75.0),
        jitter=rng.uniform(-4.0, 4.0, size=3),
    )


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


class Canvas:
    """CT (HU), SUV and label arrays (X, Y, Z) on a grid, painted in canonical mm coordinates.

    Args:
        shape: voxels (X, Y, Z).
        canonical_voxel: size of one voxel in canonical mm (actual spacing × canonical/actual field).
    """

    def __init__(self, shape: tuple[int, int, int], canonical_voxel: tuple[float, float, float]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.vox = np.asarray(canonical_voxel, float)
        self.axes = [((np.arange(n) + 0.5) - n / 2) * v for n, v in zip(self.shape, self.vox)]
        self.ct = np.full(self.shape, AIR_HU, np.float32)
        self.suv = np.zeros(self.shape, np.float32)
        self.label = np.zeros(self.shape, np.uint8)

    # -- geometry helpers -------------------------------------------------------------------
    def box(self, center, half):
        """Slices and local coordinates (broadcastable) of the voxels within ``half`` mm of ``center``."""
        sl, loc = [], []
        for k, (ax, c, h) in enumerate(zip(self.axes, center, half)):
            i0, i1 = np.searchsorted(ax, c - h), np.searchsorted(ax, c + h, side="right")
            if i1 <= i0:
                return None
            sl.append(slice(int(i0), int(i1)))
            shape = [1, 1, 1]
            shape[k] = i1 - i0
            loc.append((ax[i0:i1] - c).reshape(shape))
        return tuple(sl), loc

    def ellipsoid(self, center, radii, rot=None, bumps=0.0, rng=None):
        """(slices, r): normalised radius field (r ≤ 1 inside) of a (rotated, bumpy) ellipsoid."""
        ext = max(radii) * (1.0 + 1.5 * bumps) + self.vox.max()
        found = self.box(center, (ext, ext, ext))
        if found is None:
            return None
        sl, d = found
        if rot is not None:
            u = [d[0] * rot[0, i] + d[1] * rot[1, i] + d[2] * rot[2, i] for i in range(3)]
        else:
            u = d
        r = np.sqrt((u[0] / radii[0]) ** 2 + (u[1] / radii[1]) ** 2 + (u[2] / radii[2]) ** 2)
        if bumps > 0 and rng is not None:
            norm = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) + 1e-6
            wobble = 0.0
            for _ in range(3):
                v = rng.normal(size=3)
                v /= np.linalg.norm(v)
                dot = (d[0] * v[0] + d[1] * v[1] + d[2] * v[2]) / norm
                wobble = wobble + rng.uniform(0.3, 1.0) * np.cos(
                    rng.integers(2, 5) * np.pi * dot + rng.uniform(0, 6.3)
                )
            r = r / (1.0 + bumps * wobble / 2.0)
        return sl, np.broadcast_to(r, tuple(s.stop - s.start for s in sl))

    def tube(self, points, radius):
        """(slices, distance in mm to the polyline through ``points``) over its bounding box."""
        pts = np.asarray(points, float)
        lo, hi = pts.min(0) - radius - 2 * self.vox, pts.max(0) + radius + 2 * self.vox
        found = self.box((lo + hi) / 2, (hi - lo) / 2)
        if found is None:
            return None
        sl, _ = found
        shape = tuple(s.stop - s.start for s in sl)
        seeds = np.zeros(shape, bool)
        step = self.vox.min() / 2
        for a, b in zip(pts[:-1], pts[1:]):
            n = max(int(np.linalg.norm(b - a) / step), 1)
            for t in np.linspace(0, 1, n + 1):
                p = a + t * (b - a)
                idx = [int(np.searchsorted(ax, c)) - s.start for ax, c, s in zip(self.axes, p, sl)]
                if all(0 <= i < n_ for i, n_ in zip(idx, shape)):
                    seeds[tuple(idx)] = True
        if not seeds.any():
            return None
        return sl, ndimage.distance_transform_edt(~seeds, sampling=self.vox)

    def fill(self, sl, mask, hu=None, suv=None, label=None) -> None:
        """Set CT/SUV/label where ``mask`` (bbox-shaped) holds; values are scalars or bbox arrays."""
        if not np.any(mask):
            return
        for target, value in ((self.ct, hu), (self.suv, suv), (self.label, label)):
            if value is None:
                continue
            view = target[sl]
            view[mask] = value[mask] if isinstance(value, np.ndarray) and value.ndim else value

    def shape_fill(self, region, inside, **values) -> None:
        if region is not None:
            sl, field_ = region
            self.fill(sl, inside(field_), **values)

    def body_outline(
        self, z_ctrl, a_ctrl, b_ctrl, p: PatientParams, z_max: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Elliptic body cross-sections a(z), b(z): skin fat, muscle wall, soft-tissue interior."""
        z = self.axes[2]
        a = np.interp(z, z_ctrl, a_ctrl) * p.width
        b = np.interp(z, z_ctrl, b_ctrl) * p.depth
        keep = z <= z_max
        x, y = self.axes[0][:, None, None], self.axes[1][None, :, None]
        a3, b3 = a[None, None, :], b[None, None, :]
        e_out = (x / a3) ** 2 + (y / b3) ** 2
        body = (e_out <= 1.0) & keep[None, None, :]
        self.ct[body], self.suv[body] = FAT_HU, 0.35
        t = p.fat_mm * np.clip((a3 - 45.0) / 60.0, 0.25, 1.0)
        wall = ((x / (a3 - t)) ** 2 + (y / (b3 - t)) ** 2 <= 1.0) & body
        self.ct[wall], self.suv[wall] = MUSCLE_HU, 0.8
        inner = ((x / (a3 - t - 9)) ** 2 + (y / (b3 - t - 9)) ** 2 <= 1.0) & body
        self.ct[inner], self.suv[inner] = SOFT_HU, 0.9
        return a, b

    def at(self, z_value: float, per_z: np.ndarray) -> float:
        return float(np.interp(z_value, self.axes[2], per_z))


# -- decoys and lesions ---------------------------------------------------------------------------
def brown_fat(cv: Canvas, rng, centers) -> None:
    """Clusters of hot fat-density blobs (−95…−55 HU, SUV 3–12) around each centre, mirrored."""
    peak = rng.uniform(3.0, 12.0)
    for c in centers:
        for _ in range(int(rng.integers(2, 5))):
            pos = np.asarray(c) + rng.uniform(-12, 12, size=3)
            radius = rng.uniform(5.0, 11.0) * np.array([1.0, rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.6)])
            region = cv.ellipsoid(pos, radius, rot=_rotation(rng))
            cv.shape_fill(
                region, lambda r: r <= 1.0, hu=rng.uniform(-95, -55), suv=peak * rng.uniform(0.7, 1.0)
            )


def bowel_loop(cv: Canvas, rng, center, spread, hot: bool) -> None:
    """A short curved bowel segment: soft-tissue wall around air or fluid; hot wall when ``hot``."""
    n = int(rng.integers(3, 6))
    pts = [np.asarray(center, float)]
    direction = rng.normal(size=3)
    for _ in range(n):
        direction = direction + rng.normal(scale=0.6, size=3)
        direction /= np.linalg.norm(direction)
        pts.append(
            np.clip(
                pts[-1] + direction * rng.uniform(8, 14), np.subtract(center, spread), np.add(center, spread)
            )
        )
    outer = rng.uniform(9.0, 13.0)
    wall = rng.uniform(3.0, 4.5)
    region = cv.tube(pts, outer)
    if region is None:
        return
    sl, dist = region
    wall_suv = rng.uniform(3.5, 9.0) if hot else rng.uniform(1.0, 2.0)
    lumen_air = rng.random() < 0.55
    cv.fill(sl, dist <= outer, hu=40.0, suv=wall_suv)
    cv.fill(
        sl,
        dist <= outer - wall,
        hu=AIR_HU if lumen_air else rng.uniform(0, 20),
        suv=0.4 if lumen_air else 0.8,
    )


def joint(cv: Canvas, rng, center, radius, inflamed: bool) -> None:
    """A bone head (cortex 900 HU, marrow 350 HU) with a capsule ring, hot (SUV 3–6) when inflamed."""
    region = cv.ellipsoid(center, (radius * 1.4,) * 3)
    if region is None:
        return
    sl, r = region
    r = r * 1.4
    cv.fill(sl, r <= 1.4, hu=MUSCLE_HU, suv=rng.uniform(3.0, 6.5) if inflamed else 0.8)
    cv.fill(sl, r <= 1.0, hu=900.0, suv=0.6)
    cv.fill(sl, r <= 0.85, hu=350.0, suv=1.2)


def muscle(cv: Canvas, points, radius, hot_suv: float | None) -> None:
    region = cv.tube(points, radius)
    if region is not None:
        sl, dist = region
        cv.fill(sl, dist <= radius, hu=MUSCLE_HU, suv=hot_suv if hot_suv else 0.8)


def lesion(
    cv: Canvas, rng, center, radius, hu, suv_peak, label_value: int = 1, necrosis_ok: bool = True
) -> None:
    """A soft-tissue lesion: ellipsoidal, bumpy or lobulated; rim uptake with a necrotic core sometimes."""
    axes = radius * np.array([1.0, rng.uniform(0.75, 1.25), rng.uniform(0.75, 1.3)])
    bumps = rng.uniform(0.0, 0.3)
    parts = [(np.asarray(center, float), axes)]
    if rng.random() < 0.3:  # lobulated: a second, smaller lobe
        offset = rng.normal(size=3)
        offset *= radius * 0.7 / np.linalg.norm(offset)
        parts.append((parts[0][0] + offset, axes * rng.uniform(0.5, 0.8)))
    necrotic = necrosis_ok and radius >= 10.0 and rng.random() < 0.25
    rot = _rotation(rng)
    for pos, ax in parts:
        region = cv.ellipsoid(pos, ax, rot=rot, bumps=bumps, rng=rng)
        if region is None:
            continue
        sl, r = region
        inside = r <= 1.0
        profile = suv_peak * (1.0 - 0.35 * np.minimum(r, 1.0) ** 2)
        cv.fill(sl, inside, hu=float(hu), suv=profile.astype(np.float32), label=label_value)
        if necrotic:
            core = r <= 0.55
            cv.fill(sl, core, hu=float(rng.uniform(15, 25)), suv=float(suv_peak * rng.uniform(0.15, 0.35)))


@dataclass(frozen=True)
class LesionSizes:
    """How big and how hot whole-body lesions are (see the module docstring for the presets).

    ``median_ml``/``log_sd``: log-normal volume in ml, redrawn until it lies in [``min_ml``, ``max_ml``];
    ``median_ml`` None draws the legacy radii instead. ``suv_range``: SUV peak, log-uniform.
    """

    name: str
    median_ml: float | None
    log_sd: float = 1.0
    min_ml: float = 0.3
    max_ml: float = 150.0
    suv_range: tuple[float, float] = (3.0, 25.0)

    def with_overrides(
        self,
        median_ml: float | None = None,
        max_ml: float | None = None,
        suv_range: tuple[float, float] | None = None,
    ) -> LesionSizes:
        """This preset with some settings changed (None keeps the preset's)."""
        if self.median_ml is None and (median_ml is not None or max_ml is not None):
            raise ValueError(
                "the legacy preset draws radii, not volumes: choose realistic or small to set volumes"
            )
        changes = {
            k: v
            for k, v in (("median_ml", median_ml), ("max_ml", max_ml), ("suv_range", suv_range))
            if v is not None
        }
        if suv_range is not None and not 0.0 < suv_range[0] <= suv_range[1]:
            raise ValueError(f"lesion SUV range must be 0 < low <= high, got {suv_range}")
        return replace(self, **changes) if changes else self

    def radius_mm(self, rng: np.random.Generator) -> float:
        """Radius in (canonical) mm of a sphere of a drawn volume."""
        if self.median_ml is None:
            return rng.uniform(11.0, 24.0) if rng.random() < 0.7 else rng.uniform(3.0, 11.0)
        for _ in range(100):
            volume = self.median_ml * float(np.exp(rng.normal(0.0, self.log_sd)))
            if self.min_ml <= volume <= self.max_ml:
                break
        else:
            volume = self.median_ml
        return float((3.0 * volume * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))

    def suv_peak(self, rng: np.random.Generator) -> float:
        low, high = self.suv_range
        return math.exp(rng.uniform(math.log(low), math.log(high)))


LESION_SIZE_PRESETS: dict[str, LesionSizes] = {
    "realistic": LesionSizes("realistic", median_ml=2.5, log_sd=1.1, min_ml=0.3, max_ml=150.0),
    "small": LesionSizes("small", median_ml=1.5, log_sd=0.9, min_ml=0.3, max_ml=17.0, suv_range=(4.0, 20.0)),
    "legacy": LesionSizes("legacy", median_ml=None),
}


def _sides(rng) -> list[int]:
    return [-1, 1] if rng.random() < 0.7 else [int(rng.choice([-1, 1]))]
