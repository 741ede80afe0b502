"""Anatomy of the synthetic studies: whole body (AutoPET-like) and head and neck (HECKTOR-like).

Both paint a :class:`h2aseg.data.phantom.Canvas` in canonical mm coordinates (see
:mod:`h2aseg.data.phantom` for the frame, the decoys and the lesion model).
"""

from __future__ import annotations

import math

import numpy as np

from h2aseg.constants import AIR_HU
from h2aseg.data.phantom import (
    FAT_HU,
    LESION_SIZE_PRESETS,
    LUNG_HU,
    MUSCLE_HU,
    SOFT_HU,
    Canvas,
    LesionSizes,
    PatientParams,
    _sides,
    bowel_loop,
    brown_fat,
    joint,
    lesion,
    muscle,
)

__all__ = ["build_whole_body", "build_head_neck"]


# -- whole body (AutoPET-like) --------------------------------------------------------------------
def build_whole_body(
    cv: Canvas,
    p: PatientParams,
    rng: np.random.Generator,
    lesion_free: bool,
    sizes: LesionSizes = LESION_SIZE_PRESETS["realistic"],
) -> int:
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
    cv.shape_fill(
        cv.ellipsoid(head_c, (68 * p.width, 82, 60)), lambda r: (r <= 0.95) & (r > 0.86), hu=900.0, suv=0.7
    )
    brain_suv = rng.uniform(6.0, 11.0)
    cv.shape_fill(cv.ellipsoid(head_c, (68 * p.width, 82, 60)), lambda r: r <= 0.86, hu=35.0, suv=brain_suv)
    for s in (-1, 1):
        cv.shape_fill(
            cv.ellipsoid((s * 15, -10, 122), (8, 8, 10)), lambda r: r <= 1, hu=45.0, suv=rng.uniform(2.5, 5.0)
        )
        cv.shape_fill(
            cv.ellipsoid((s * 42, 8, 128), (11, 15, 15)), lambda r: r <= 1, hu=5.0, suv=rng.uniform(1.8, 3.2)
        )
        cv.shape_fill(
            cv.ellipsoid((s * 27, -28, 114), (9, 9, 9)), lambda r: r <= 1, hu=40.0, suv=rng.uniform(2.0, 3.5)
        )

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
            lambda r: r <= 1,
            hu=LUNG_HU,
            suv=0.35,
        )
        cv.shape_fill(
            cv.ellipsoid((s * 0.74 * A(55), 0.05 * B(55), 55), (19, 24, 20)),
            lambda r: r <= 1,
            hu=FAT_HU,
            suv=0.35,
        )
    cv.shape_fill(cv.ellipsoid((0, -0.15 * B(50), 50), (20, 24, 28)), lambda r: r <= 1, hu=-90.0, suv=0.35)
    rot_heart = np.array([[math.cos(0.5), -math.sin(0.5), 0], [math.sin(0.5), math.cos(0.5), 0], [0, 0, 1]])
    heart = cv.ellipsoid((0.12 * A(12), -0.22 * B(12), 12) + j, (40, 34, 36), rot=rot_heart)
    myo = rng.uniform(4.0, 12.0) if rng.random() < 0.6 else rng.uniform(1.5, 3.0)
    blood = rng.uniform(1.4, 2.0)
    cv.shape_fill(heart, lambda r: r <= 1, hu=45.0, suv=myo)
    cv.shape_fill(heart, lambda r: r <= 0.7, hu=40.0, suv=blood)
    aorta = cv.tube(
        [(10, -0.1 * B(70), 70), (12, 0.35 * B(40), 55), (8, 0.4 * B(-40), -40), (0, 0.35 * B(-100), -100)],
        11.0,
    )
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
    cv.shape_fill(
        cv.ellipsoid((0, -0.2 * B(-90), -95), (0.7 * A(-90), 0.5 * B(-90), 62)),
        lambda r: r <= 1,
        hu=-90.0,
        suv=0.35,
    )
    liver_hu, liver_suv = rng.uniform(50.0, 65.0), rng.uniform(1.8, 2.5)
    liver_c = np.array((-0.4 * A(-20), -0.05 * B(-20), -18)) + j
    liver_r = (0.4 * A(-20), 0.62 * B(-20), 40)
    cv.shape_fill(cv.ellipsoid(liver_c, liver_r), lambda r: r <= 1, hu=liver_hu, suv=liver_suv)
    cv.shape_fill(
        cv.ellipsoid((0.5 * A(-15), 0.35 * B(-15), -15), (18, 28, 28)),
        lambda r: r <= 1,
        hu=48.0,
        suv=rng.uniform(1.6, 2.2),
    )
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
        muscle(
            cv,
            [(s * 22, 0.45 * B(-40), -40), (s * 32, 0.35 * B(-100), -100), (s * 42, 0.15 * B(-150), -150)],
            13.0,
            hot(f"psoas_{side}"),
        )
        muscle(
            cv,
            [
                (s * 0.25 * A(62), -(B(62) - p.fat_mm - 12), 62),
                (s * 0.6 * A(66), -(0.75 * B(66) - p.fat_mm), 66),
            ],
            10.0,
            hot(f"pect_{side}"),
        )
        muscle(cv, [(s * 34, 18, 124), (s * 22, -22, 86)], 8.0, hot(f"scm_{side}"))

    # bowel: normal loops and hot (decoy) loops in the mesenteric fat
    bowel_c, spread = (0, -0.2 * B(-90), -95), (0.55 * A(-90), 0.4 * B(-90), 50)
    n_hot = int(rng.integers(0, 4)) if rng.random() < 0.75 else 0
    for k in range(int(rng.integers(3, 6)) + n_hot):
        c = np.array(bowel_c) + rng.uniform(-1, 1, 3) * spread
        bowel_loop(cv, rng, c, spread, hot=k < n_hot)

    # pelvis: iliac bones, bladder, hips (joints), inguinal fat
    for s in (-1, 1):
        cv.shape_fill(
            cv.ellipsoid((s * 0.55 * A(-125), 0.3 * B(-125), -125), (14, 34, 28)),
            lambda r: r <= 1,
            hu=450.0,
            suv=0.9,
        )
        cv.shape_fill(
            cv.ellipsoid((s * 0.45 * A(-178), -0.55 * B(-178), -178), (22, 15, 15)),
            lambda r: r <= 1,
            hu=FAT_HU,
            suv=0.35,
        )
    bladder_fill = rng.uniform(0.7, 1.2)
    cv.shape_fill(
        cv.ellipsoid((0, -0.35 * B(-165), -165), (30 * bladder_fill, 25 * bladder_fill, 22 * bladder_fill)),
        lambda r: r <= 1,
        hu=8.0,
        suv=rng.uniform(8.0, 40.0),
    )
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
        radius = sizes.radius_mm(rng)
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
            c = (
                s * rng.uniform(0.3, 0.5) * A(-160),
                rng.uniform(-0.5, -0.1) * B(-160),
                rng.uniform(-185, -140),
            )
        suv = sizes.suv_peak(rng)
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
        cv.shape_fill(
            cv.ellipsoid((s * 16, -5, 18), (9, 9, 13)), lambda r: r <= 1, hu=45.0, suv=rng.uniform(2.5, 5.0)
        )
        cv.shape_fill(
            cv.ellipsoid((s * 45, 12, 28), (12, 16, 18)),
            lambda r: r <= 1,
            hu=rng.uniform(-5, 10),
            suv=rng.uniform(1.8, 3.2),
        )
        cv.shape_fill(
            cv.ellipsoid((s * 28, -28, 0), (10, 10, 10)), lambda r: r <= 1, hu=40.0, suv=rng.uniform(2.0, 3.5)
        )
        cv.shape_fill(
            cv.ellipsoid((s * 14, -22, -50), (8, 8, 15)), lambda r: r <= 1, hu=90.0, suv=rng.uniform(1.2, 3.0)
        )
    airway = cv.tube([(0, -8, 38), (0, -12, 0), (0, -18, -60), (0, -15, -110)], 9.0)
    if airway is not None:
        cv.fill(airway[0], airway[1] <= 9.0, hu=AIR_HU, suv=0.0)
    spine = cv.tube([(0, 28, z) for z in (-110, -40, 0, 40)], 12.0)
    if spine is not None:
        cv.fill(spine[0], spine[1] <= 12.0, hu=700.0, suv=0.7)
        cv.fill(spine[0], spine[1] <= 10.0, hu=250.0, suv=rng.uniform(1.2, 1.8))
    hot = rng.random() < 0.4
    for s in (-1, 1):
        muscle(
            cv,
            [(s * 36, 22, 36), (s * 16, -26, -62)],
            9.0,
            rng.uniform(3.0, 6.0) if hot and rng.random() < 0.6 else None,
        )
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
        lesion(
            cv,
            rng,
            c,
            rng.uniform(10.0, 22.0),
            SOFT_HU + rng.uniform(0, 15),
            rng.uniform(6.0, 20.0),
            label_value=1,
        )
    n_n = 0 if rng.random() < 0.3 else int(rng.integers(1, 4))
    side = rng.choice([-1, 1])
    for _ in range(n_n):
        s = side if rng.random() < 0.8 else -side
        c = (s * rng.uniform(28, 42), rng.uniform(-10, 12), rng.uniform(-50, 12))
        lesion(cv, rng, c, rng.uniform(7.0, 16.0), rng.uniform(25, 45), rng.uniform(3.0, 14.0), label_value=2)
    return n_p, n_n
