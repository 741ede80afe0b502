"""The data stage: reading images, finding cases, preprocessing, augmentation, synthetic cohorts.

- :mod:`h2aseg.data.io` — NIfTI/MHA/NRRD/DICOM in and out, CT in HU, PET in SUVbw.
- :mod:`h2aseg.data.layouts` — AutoPET-II, HECKTOR 2022, nnU-Net raw and manifest datasets;
  patient-grouped splits.
- :mod:`h2aseg.data.preprocess` — one grid, intensity scaling, on-disk cache, back to the source grid.
- :mod:`h2aseg.data.transforms` — MONAI training and evaluation pipelines.
- :mod:`h2aseg.data.synthetic`, :mod:`h2aseg.data.phantom`, :mod:`h2aseg.data.anatomy`
  — phantom cohorts in the real layouts.
- :mod:`h2aseg.data.export` — nnU-Net raw and manifest writers.
"""
