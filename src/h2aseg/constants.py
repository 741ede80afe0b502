"""Physical and scanner constants, named once for the whole package.

Values that are facts about CT, PET or units live here; settings a user may change (SUV thresholds of
the reference methods, intensity windows of the preprocessing, the plausibility limits of the content
checks) stay with the code and options that own them.

CT (Hounsfield units, HU): water is 0 and air −1000 by the definition of the scale. Scanners store CT as
12-bit integers with a rescale intercept of −1024, so stored values span −1024 … 3071 HU; −1024 is what a
scanner writes outside its reconstruction circle and what h2aseg fills in where a resampled CT has no
data.

PET: standardised uptake value SUVbw = C[Bq/ml] · weight[g] / dose[Bq] (g/ml), the dose decayed with the
half-life of the tracer (F-18 for FDG).
"""

from __future__ import annotations

__all__ = [
    "AIR_HU",
    "WATER_HU",
    "CT_FLOOR_HU",
    "CT_CEILING_HU",
    "AIR_BELOW_HU",
    "F18_HALF_LIFE_S",
    "MM3_PER_ML",
    "G_PER_KG",
]

#: Air on the Hounsfield scale (by definition).
AIR_HU = -1000.0
#: Water on the Hounsfield scale (by definition).
WATER_HU = 0.0
#: Lowest value of a 12-bit CT (stored 0 with intercept −1024): the fill outside a resampled CT.
CT_FLOOR_HU = -1024.0
#: Highest value of a 12-bit CT (stored 4095 with intercept −1024).
CT_CEILING_HU = 3071.0
#: A voxel below this counts as air (or lung) in the CT content check: halfway from air to soft tissue.
AIR_BELOW_HU = -500.0
#: Half-life of fluorine-18 in seconds (109.77 min).
F18_HALF_LIFE_S = 6586.2
#: Cubic millimetres in a millilitre (voxel volume in mm³ -> ml).
MM3_PER_ML = 1000.0
#: Grams in a kilogram (patient weight for SUVbw).
G_PER_KG = 1000.0
