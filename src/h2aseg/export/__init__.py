"""Trained models that travel: model packages (:mod:`.package`) and ONNX / TorchScript export
(:mod:`.onnx_export`)."""
