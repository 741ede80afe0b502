"""Analytic PET/CT phantoms: CT in HU, activity in SUV and lesion labels on one fine grid.

Anatomy is laid out in a *canonical* frame in mm (x: patient right → left, y: anterior → posterior,
z: feet → head, origin at the field centre): 256 × 256 × 384 mm for the whole-body (AutoPET-like)
phantom, 224 × 224 × 208 mm for the head-and-neck (HECKTOR-like) one. A field of another size is
mapped onto the canonical frame, so small test volumes hold a shrunk but complete body.

What makes the cohort need both modalities (DESIGN.md §6):

- organs that are hot on PET: brain, myocardium (variable), kidneys, bladder, liver/spleen just
  below the SUV 2.5 threshold (noise pushes parts above it), tonsils and salivary glands;
- **decoys** — benign FDG-avid tissue that looks like a lesion on PET and differs on CT, placed where
  lesions also occur: brown fat (hot blobs of fat density −95…−55 HU in the neck, supraclavicular,
  axillary and paravertebral fat where nodes sit), hot bowel (a hot wall around air or fluid), hot
  muscles (uptake along a whole muscle: psoas, sternocleidomastoid, pectoralis), inflamed joints
  (a hot ring around a humeral or femoral head);
- **lesions** of soft-tissue density (never fat or air): nodes in fat (clearly seen on CT), lung
  nodules, liver metastases and oropharyngeal primaries only 10–30 HU from their surroundings
  (barely seen on CT); radius mostly 11–24 mm, some 3–11 mm; ellipsoidal, lobulated or bumpy;
  SUV peak log-uniform in 3–25 (GTVp 6–20, GTVn 3–14); a share with a necrotic core (rim uptake).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["Canvas", "PatientParams", "build_whole_body", "build_head_neck", "patient_params"]

FAT_HU, MUSCLE_HU, SOFT_HU, LUNG_HU, AIR_HU = -100.0, 50.0, 38.0, -850.0, -1000.0


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
                wobble = wobble + rng.uniform(0.3, 1.0) * np.cos(rng.integers(2, 5) * np.pi * dot + rng.uniform(0, 6.3))
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

    def body_outline(self, z_ctrl, a_ctrl, b_ctrl, p: PatientParams, z_max: float) -> tuple[np.ndarray, np.ndarray]:
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
            cv.shape_fill(region, lambda r: r <= 1.0, hu=rng.uniform(-95, -55), suv=peak * rng.uniform(0.7, 1.0))


def bowel_loop(cv: Canvas, rng, center, spread, hot: bool) -> None:
    """A short curved bowel segment: soft-tissue wall around air or fluid; hot wall when ``hot``."""
    n = int(rng.integers(3, 6))
    pts = [np.asarray(center, float)]
    direction = rng.normal(size=3)
    for _ in range(n):
        direction = direction + rng.normal(scale=0.6, size=3)
        direction /= np.linalg.norm(direction)
        pts.append(np.clip(pts[-1] + direction * rng.uniform(8, 14), np.subtract(center, spread), np.add(center, spread)))
    outer = rng.uniform(9.0, 13.0)
    wall = rng.uniform(3.0, 4.5)
    region = cv.tube(pts, outer)
    if region is None:
        return
    sl, dist = region
    wall_suv = rng.uniform(3.5, 9.0) if hot else rng.uniform(1.0, 2.0)
    lumen_air = rng.random() < 0.55
    cv.fill(sl, dist <= outer, hu=40.0, suv=wall_suv)
    cv.fill(sl, dist <= outer - wall, hu=AIR_HU if lumen_air else rng.uniform(0, 20), suv=0.4 if lumen_air else 0.8)


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


def lesion(cv: Canvas, rng, center, radius, hu, suv_peak, label_value: int = 1, necrosis_ok: bool = True) -> None:
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


def lesion_radius(rng) -> float:
    return rng.uniform(11.0, 24.0) if rng.random() < 0.7 else rng.uniform(3.0, 11.0)


def _sides(rng) -> list[int]:
    return [-1, 1] if rng.random() < 0.7 else [int(rng.choice([-1, 1]))]


# -- whole body (AutoPET-like) --------------------------------------------------------------------
def build_whole_body(cv: Canvas, p: PatientParams, rng: np.random.Generator, lesion_free: bool) -> int:
    """Paint a whole-body study (canonical field 256 × 256 × 384 mm); returns the number of lesions."""
    j = p.jitter
    z_ctrl = [-192, -150, -100, -40, 20, 60, 78, 92, 110, 128]
    a_ctrl = [118, 122, 118, 114, 118, 120, 98, 58, 52, 55]
    b_ctrl = [88, 90, 86, 84, 85, 82, 70, 52, 50, 55]
    a, b = cv.body_outline(z_ctrl, a_ctrl, b_ctrl, p, z_max=128)
    A = lambda z: cv.at(z, a)  # noqa: E731
    B = lambda z: cv.at(z, b)  # noqa: E731

    # head: scalp, skull, brain (very hot); tonsils and salivary glands below
    head_c = (0, 4, 160) + j
    cv.shape_fill(cv.ellipsoid(head_c, (68 * p.width, 82, 60)), lambda r: r <= 1, hu=SOFT_HU, suv=0.9)
    cv.shape_fill(cv.ellipsoid(head_c, (68 * p.width, 82, 60)), lambda r: (r <= 0.95) & (r > 0.86), hu=900.0, suv=0.7)
    brain_suv = rng.uniform(6.0, 11.0)
    cv.shape_fill(cv.ellipsoid(head_c, (68 * p.width, 82, 60)), lambda r: r <= 0.86, hu=35.0, suv=brain_suv)
    for s in (-1, 1):
        cv.shape_fill(cv.ellipsoid((s * 15, -10, 122), (8, 8, 10)), lambda r: r <= 1, hu=45.0, suv=rng.uniform(2.5, 5.0))
        cv.shape_fill(cv.ellipsoid((s * 42, 8, 128), (11, 15, 15)), lambda r: r <= 1, hu=5.0, suv=rng.uniform(1.8, 3.2))
        cv.shape_fill(cv.ellipsoid((s * 27, -28, 114), (9, 9, 9)), lambda r: r <= 1, hu=40.0, suv=rng.uniform(2.0, 3.5))

    # neck: fat pads, airway, sternocleidomastoid muscles
    for s in (-1, 1):
        cv.shape_fill(cv.ellipsoid((s * 30, 2, 104), (15, 17, 20)), lambda r: r <= 1, hu=FAT_HU, suv=0.35)
        cv.shape_fill(cv.ellipsoid((s * 42, -4, 84), (20, 16, 10)), lambda r: r <= 1, hu=FAT_HU, suv=0.35)
    airway = cv.tube([(0, -18, 135), (0, -18, 60)], 8.0)
    if airway is not None:
        cv.fill(airway[0], airway[1] <= 8.0, hu=AIR_HU, suv=0.0)

    # thorax: lungs, mediastinal fat, heart, aorta, ribs, axillary fat, shoulders, pectorals
    for s in (-1, 1):
        cv.shape_fill(
            cv.ellipsoid((s * 0.45 * A(38), 0.05 * B(38), 36) + j, (0.32 * A(38), 0.68 * B(38), 46)),
            lambda r: r <= 1, hu=LUNG_HU, suv=0.35,
        )
        cv.shape_fill(cv.ellipsoid((s * 0.74 * A(55), 0.05 * B(55), 55), (19, 24, 20)), lambda r: r <= 1, hu=FAT_HU, suv=0.35)
    cv.shape_fill(cv.ellipsoid((0, -0.15 * B(50), 50), (20, 24, 28)), lambda r: r <= 1, hu=-90.0, suv=0.35)
    rot_heart = np.array([[math.cos(0.5), -math.sin(0.5), 0], [math.sin(0.5), math.cos(0.5), 0], [0, 0, 1]])
    heart = cv.ellipsoid((0.12 * A(12), -0.22 * B(12), 12) + j, (40, 34, 36), rot=rot_heart)
    myo = rng.uniform(4.0, 12.0) if rng.random() < 0.6 else rng.uniform(1.5, 3.0)
    blood = rng.uniform(1.4, 2.0)
    cv.shape_fill(heart, lambda r: r <= 1, hu=45.0, suv=myo)
    cv.shape_fill(heart, lambda r: r <= 0.7, hu=40.0, suv=blood)
    aorta = cv.tube([(10, -0.1 * B(70), 70), (12, 0.35 * B(40), 55), (8, 0.4 * B(-40), -40), (0, 0.35 * B(-100), -100)], 11.0)
    if aorta is not None:
        cv.fill(aorta[0], aorta[1] <= 11.0, hu=40.0, suv=blood)

    # spine along the back (cortex, marrow) from pelvis to neck
    spine_pts = [(0, 0.62 * B(z), z) for z in (-130, -60, 0, 60, 100, 135)]
    spine = cv.tube(spine_pts, 13.0)
    if spine is not None:
        cv.fill(spine[0], spine[1] <= 13.0, hu=700.0, suv=0.7)
        cv.fill(spine[0], spine[1] <= 11.0, hu=250.0, suv=rng.uniform(1.2, 1.8))

    # ribs: bony bands inside the chest wall
    zs = cv.axes[2]
    x, y = cv.axes[0][:, None, None], cv.axes[1][None, :, None]
    zsel = np.where((zs > 0) & (zs < 72) & ((zs % 24) < 7))[0]
    if len(zsel):
        sub = np.s_[:, :, zsel[0] : zsel[-1] + 1]
        a3, b3 = a[None, None, zsel[0] : zsel[-1] + 1], b[None, None, zsel[0] : zsel[-1] + 1]
        t = p.fat_mm + 10.0
        e = (x / (a3 - t)) ** 2 + (y / (b3 - t)) ** 2
        rib = (e <= 1.0) & (e >= 0.8) & (np.abs(x) > 18) & ((zs[None, None, zsel[0] : zsel[-1] + 1] % 24) < 7)
        cv.fill(sub, rib, hu=650.0, suv=0.8)

    # abdomen: mesenteric fat, liver, spleen, kidneys, psoas
    cv.shape_fill(cv.ellipsoid((0, -0.2 * B(-90), -95), (0.7 * A(-90), 0.5 * B(-90), 62)), lambda r: r <= 1, hu=-90.0, suv=0.35)
    liver_hu, liver_suv = rng.uniform(50.0, 65.0), rng.uniform(1.8, 2.5)
    liver_c = np.array((-0.4 * A(-20), -0.05 * B(-20), -18)) + j
    liver_r = (0.4 * A(-20), 0.62 * B(-20), 40)
    cv.shape_fill(cv.ellipsoid(liver_c, liver_r), lambda r: r <= 1, hu=liver_hu, suv=liver_suv)
    cv.shape_fill(cv.ellipsoid((0.5 * A(-15), 0.35 * B(-15), -15), (18, 28, 28)), lambda r: r <= 1, hu=48.0,
                  suv=rng.uniform(1.6, 2.2))
    for s in (-1, 1):
        kid = cv.ellipsoid((s * 0.38 * A(-60), 0.45 * B(-60), -60), (16, 20, 32))
        cv.shape_fill(kid, lambda r: r <= 1, hu=35.0, suv=rng.uniform(3.0, 5.0))
        cv.shape_fill(kid, lambda r: r <= 0.45, hu=10.0, suv=rng.uniform(6.0, 20.0))

    hot_muscles = set()
    if rng.random() < 0.45:
        names = ["psoas_l", "psoas_r", "pect_l", "pect_r", "scm_l", "scm_r"]
        hot_muscles = set(rng.choice(names, size=int(rng.integers(1, 3)), replace=False).tolist())
    hot = lambda name: rng.uniform(3.0, 6.5) if name in hot_muscles else None  # noqa: E731
    for s, side in ((-1, "r"), (1, "l")):
        muscle(cv, [(s * 22, 0.45 * B(-40), -40), (s * 32, 0.35 * B(-100), -100), (s * 42, 0.15 * B(-150), -150)], 13.0,
               hot(f"psoas_{side}"))
        muscle(cv, [(s * 0.25 * A(62), -(B(62) - p.fat_mm - 12), 62), (s * 0.6 * A(66), -(0.75 * B(66) - p.fat_mm), 66)],
               10.0, hot(f"pect_{side}"))
        muscle(cv, [(s * 34, 18, 124), (s * 22, -22, 86)], 8.0, hot(f"scm_{side}"))

    # bowel: normal loops and hot (decoy) loops in the mesenteric fat
    bowel_c, spread = (0, -0.2 * B(-90), -95), (0.55 * A(-90), 0.4 * B(-90), 50)
    n_hot = int(rng.integers(0, 4)) if rng.random() < 0.75 else 0
    for k in range(int(rng.integers(3, 6)) + n_hot):
        c = np.array(bowel_c) + rng.uniform(-1, 1, 3) * spread
        bowel_loop(cv, rng, c, spread, hot=k < n_hot)

    # pelvis: iliac bones, bladder, hips (joints), inguinal fat
    for s in (-1, 1):
        cv.shape_fill(cv.ellipsoid((s * 0.55 * A(-125), 0.3 * B(-125), -125), (14, 34, 28)),
                      lambda r: r <= 1, hu=450.0, suv=0.9)
        cv.shape_fill(cv.ellipsoid((s * 0.45 * A(-178), -0.55 * B(-178), -178), (22, 15, 15)),
                      lambda r: r <= 1, hu=FAT_HU, suv=0.35)
    bladder_fill = rng.uniform(0.7, 1.2)
    cv.shape_fill(cv.ellipsoid((0, -0.35 * B(-165), -165), (30 * bladder_fill, 25 * bladder_fill, 22 * bladder_fill)),
                  lambda r: r <= 1, hu=8.0, suv=rng.uniform(8.0, 40.0))
    inflamed = rng.random() < 0.35
    for s in (-1, 1):
        joint(cv, rng, (s * 0.56 * A(-172), 0.0, -172), 18.0, inflamed and rng.random() < 0.7)
        joint(cv, rng, (s * (A(70) - 32), 0.1 * B(70), 70), 16.0, inflamed and rng.random() < 0.5)

    # brown fat (decoy) where nodes also sit
    if rng.random() < 0.5:
        centers = []
        for s in _sides(rng):
            centers += [(s * 30, 2, 104), (s * 42, -4, 84), (s * 0.74 * A(55), 0.05 * B(55), 55)]
            if rng.random() < 0.5:
                centers.append((s * 28, 0.5 * B(50), 50))
        keep = rng.random(len(centers)) < 0.75
        brown_fat(cv, rng, [c for c, k in zip(centers, keep) if k] or centers[:1])

    if lesion_free:
        return 0
    n_lesions = int(rng.choice([1, 1, 2, 2, 3, 4]))
    sites = ["cervical", "supraclavicular", "axillary", "mediastinal", "lung", "liver", "abdominal", "pelvic"]
    probs = np.array([0.13, 0.12, 0.15, 0.12, 0.12, 0.12, 0.14, 0.10])
    for _ in range(n_lesions):
        site = rng.choice(sites, p=probs / probs.sum())
        s = rng.choice([-1, 1])
        radius = lesion_radius(rng)
        hu = rng.uniform(25.0, 50.0)
        if site == "cervical":
            c = (s * rng.uniform(25, 36), rng.uniform(-6, 10), rng.uniform(96, 116))
        elif site == "supraclavicular":
            c = (s * rng.uniform(32, 50), rng.uniform(-10, 4), rng.uniform(80, 88))
        elif site == "axillary":
            c = (s * rng.uniform(0.64, 0.78) * A(55), rng.uniform(-0.1, 0.2) * B(55), rng.uniform(46, 64))
        elif site == "mediastinal":
            c = (rng.uniform(-14, 14), rng.uniform(-0.3, -0.05) * B(50), rng.uniform(32, 64))
        elif site == "lung":
            u = rng.normal(size=3)
            u *= rng.uniform(0, 0.7) / np.linalg.norm(u)
            c = (s * 0.45 * A(38) + u[0] * 0.32 * A(38), 0.05 * B(38) + u[1] * 0.68 * B(38), 36 + u[2] * 46)
            hu, radius = rng.uniform(20.0, 45.0), min(radius, 18.0)
        elif site == "liver":
            u = rng.normal(size=3)
            u *= rng.uniform(0, 0.65) / np.linalg.norm(u)
            c = tuple(liver_c + u * np.asarray(liver_r))
            hu = liver_hu - rng.uniform(10.0, 30.0)
        elif site == "abdominal":
            c = (rng.uniform(-0.4, 0.4) * A(-85), rng.uniform(-0.3, 0.3) * B(-85), rng.uniform(-125, -50))
        else:
            c = (s * rng.uniform(0.3, 0.5) * A(-160), rng.uniform(-0.5, -0.1) * B(-160), rng.uniform(-185, -140))
        suv = math.exp(rng.uniform(math.log(3.0), math.log(25.0)))
        lesion(cv, rng, c, radius, hu, suv)
    return n_lesions


# -- head and neck (HECKTOR-like) -----------------------------------------------------------------
def build_head_neck(cv: Canvas, p: PatientParams, rng: np.random.Generator) -> tuple[int, int]:
    """Paint a head-and-neck study (canonical field 224 × 224 × 208 mm, z from the upper chest to the
    brain); label 1 = GTVp, 2 = GTVn. Returns (number of GTVp, number of GTVn)."""
    j = p.jitter
    z_ctrl = [-104, -75, -50, 0, 30, 45]
    a_ctrl = [108, 100, 62, 55, 62, 70]
    b_ctrl = [75, 70, 55, 55, 68, 80]
    a, b = cv.body_outline(z_ctrl, a_ctrl, b_ctrl, p, z_max=45)
    A = lambda z: cv.at(z, a)  # noqa: E731
    head_c, head_r = (0, 5, 75) + j, (70 * p.width, 86, 66)
    head = cv.ellipsoid(head_c, head_r)
    cv.shape_fill(head, lambda r: r <= 1, hu=SOFT_HU, suv=0.9)
    zc = cv.axes[2]
    if head is not None:
        sl, r = head
        zloc = zc[sl[2]][None, None, :]
        cv.fill(sl, (r <= 0.95) & (r > 0.86) & (zloc > 40), hu=900.0, suv=0.7)
        cv.fill(sl, (r <= 0.86) & (zloc > 44), hu=35.0, suv=rng.uniform(6.0, 11.0))
    tongue = cv.ellipsoid((0, -25, 24), (28, 24, 14))
    cv.shape_fill(tongue, lambda r: r <= 1, hu=MUSCLE_HU, suv=rng.uniform(1.2, 2.0))
    mandible = cv.tube([(x, -48 + 0.012 * x * x, 12) for x in np.linspace(-48, 48, 9)], 7.0)
    if mandible is not None:
        cv.fill(mandible[0], mandible[1] <= 7.0, hu=900.0, suv=0.7)
    for s in (-1, 1):
        cv.shape_fill(cv.ellipsoid((s * 32, 2, -12), (16, 22, 34)), lambda r: r <= 1, hu=FAT_HU, suv=0.35)
        cv.shape_fill(cv.ellipsoid((s * 45, -5, -72), (22, 15, 12)), lambda r: r <= 1, hu=FAT_HU, suv=0.35)
        cv.shape_fill(cv.ellipsoid((s * 45, 10, -120), (32, 40, 45)), lambda r: r <= 1, hu=LUNG_HU, suv=0.35)
        cv.shape_fill(cv.ellipsoid((s * 16, -5, 18), (9, 9, 13)), lambda r: r <= 1, hu=45.0,
                      suv=rng.uniform(2.5, 5.0))
        cv.shape_fill(cv.ellipsoid((s * 45, 12, 28), (12, 16, 18)), lambda r: r <= 1, hu=rng.uniform(-5, 10),
                      suv=rng.uniform(1.8, 3.2))
        cv.shape_fill(cv.ellipsoid((s * 28, -28, 0), (10, 10, 10)), lambda r: r <= 1, hu=40.0, suv=rng.uniform(2.0, 3.5))
        cv.shape_fill(cv.ellipsoid((s * 14, -22, -50), (8, 8, 15)), lambda r: r <= 1, hu=90.0, suv=rng.uniform(1.2, 3.0))
    airway = cv.tube([(0, -8, 38), (0, -12, 0), (0, -18, -60), (0, -15, -110)], 9.0)
    if airway is not None:
        cv.fill(airway[0], airway[1] <= 9.0, hu=AIR_HU, suv=0.0)
    spine = cv.tube([(0, 28, z) for z in (-110, -40, 0, 40)], 12.0)
    if spine is not None:
        cv.fill(spine[0], spine[1] <= 12.0, hu=700.0, suv=0.7)
        cv.fill(spine[0], spine[1] <= 10.0, hu=250.0, suv=rng.uniform(1.2, 1.8))
    hot = rng.random() < 0.4
    for s in (-1, 1):
        muscle(cv, [(s * 36, 22, 36), (s * 16, -26, -62)], 9.0, rng.uniform(3.0, 6.0) if hot and rng.random() < 0.6 else None)
        joint(cv, rng, (s * (A(-95) - 16), 5, -95), 17.0, rng.random() < 0.15)
    if rng.random() < 0.45:
        centers = []
        for s in _sides(rng):
            centers += [(s * 32, 2, -12), (s * 45, -5, -72), (s * 34, 4, -40)]
        brown_fat(cv, rng, centers)

    n_p = 0
    if rng.random() < 0.95:
        n_p = 1
        choice = rng.integers(0, 3)
        s = rng.choice([-1, 1])
        c = [(s * 16, -5, 18), (0, -15, 5), (s * 5, -15, -30)][choice] + rng.uniform(-4, 4, 3)
        lesion(cv, rng, c, rng.uniform(10.0, 22.0), SOFT_HU + rng.uniform(0, 15), rng.uniform(6.0, 20.0), label_value=1)
    n_n = 0 if rng.random() < 0.3 else int(rng.integers(1, 4))
    side = rng.choice([-1, 1])
    for _ in range(n_n):
        s = side if rng.random() < 0.8 else -side
        c = (s * rng.uniform(28, 42), rng.uniform(-10, 12), rng.uniform(-50, 12))
        lesion(cv, rng, c, rng.uniform(7.0, 16.0), rng.uniform(25, 45), rng.uniform(3.0, 14.0), label_value=2)
    return n_p, n_n
