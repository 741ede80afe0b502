"""The Table 1 baselines of the H2ASeg paper, registered in :mod:`h2aseg.models.registry` on import.

=================  ==========================================================  =============================
registry name      network                                                     module
=================  ==========================================================  =============================
``unet3d``         UNet-3D (MONAI UNet), CT and PET as two channels            :mod:`.monai_nets`
``vnet``           VNet (MONAI's V-Net transitions), two channels              :mod:`.monai_nets`
``resunet3d``      ResUNet-3D, one encoder, two channels                       :mod:`.resunet`
``resunet3d_pet``  the same network on PET only (not in Table 1)               :mod:`.resunet`
``resunet3d_ct``   the same network on CT only (not in Table 1)                :mod:`.resunet`
``unetr``          UNETR (MONAI), two channels                                 :mod:`.monai_nets`
``swinunetr``      SwinUNETR (MONAI), two channels                             :mod:`.monai_nets`
``nnunet``         nnU-Net topology on MONAI's DynUNet, two channels           :mod:`.monai_nets`
``nestedformer``   NestedFormer (Xing et al. 2022), own implementation         :mod:`.nestedformer`
``a2fseg``         A2FSeg (Wang & Hong 2023), own implementation               :mod:`.a2fseg`
``sdb``            SDB (Xue et al. 2021), own implementation                   :mod:`.sdb`
``basicunet``      MONAI BasicUNet, two channels (not in the paper; a fast     :mod:`.monai_nets`
                   CPU reference for the demo)
=================  ==========================================================  =============================

The training-free reference rows (SUV ≥ 2.5, 41 % of SUVmax) are functions in :mod:`.threshold`,
not networks, and are not in the registry. ``h2aseg info`` lists every registered network; the tests
iterate the registry, not this table.
"""

from h2aseg.models.baselines import a2fseg, monai_nets, nestedformer, resunet, sdb, threshold
from h2aseg.models.baselines.threshold import THRESHOLD_METHODS, suv_max_fraction, suv_threshold

__all__ = [
    "THRESHOLD_METHODS",
    "a2fseg",
    "monai_nets",
    "nestedformer",
    "resunet",
    "sdb",
    "suv_max_fraction",
    "suv_threshold",
    "threshold",
]
