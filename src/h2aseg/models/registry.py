"""One registry that builds every network by name (timm-style).

A network is registered with a factory function::

    @register_model("unet3d", description="UNet-3D (MONAI), CT and PET as two channels")
    def unet3d(in_channels: int = 1, num_classes: int = 1, **options) -> nn.Module: ...

Every registered network is called as ``model(ct, pet)`` with two tensors of shape (B, 1, H, W, D) and
returns logits (B, num_classes, H, W, D); networks with deep supervision return, in training mode, a
list of logits ordered from full resolution to coarsest (see :mod:`h2aseg.training.losses`).

``build_model(name, **options)`` passes the keywords through to the factory. Factories that need the
training patch (UNETR, SwinUNETR, nnU-Net's planned topology) declare ``uses_patch_size=True`` and take
a ``patch_size`` keyword; :func:`model_options_for` adds it for them from the run's settings.

:func:`build_network`, :func:`num_classes_for` and :func:`preprocess_config_for` turn a run's config
(:class:`h2aseg.config.RunConfig`) into its network, class count and preprocessing; training, the
benchmark and prediction all use them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from h2aseg.errors import ConfigError

if TYPE_CHECKING:
    from h2aseg.config import RunConfig
    from h2aseg.data.preprocess import PreprocessConfig


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    description: str = ""
    uses_patch_size: bool = False
    deep_supervision: bool = False
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}

#: Modules imported on first use of the registry; each registers its networks on import.
_PROVIDERS: tuple[str, ...] = (
    "h2aseg.models.h2aseg",
    "h2aseg.models.h2aseg_release",
    "h2aseg.models.baselines",
)
_loaded = False


def register_model(
    name: str,
    *,
    description: str = "",
    uses_patch_size: bool = False,
    deep_supervision: bool = False,
    **defaults,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``factory`` under ``name``; ``defaults`` are keywords always passed to it."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, factory, description, uses_patch_size, deep_supervision, defaults)
        return factory

    return decorator


def _load_providers() -> None:
    global _loaded
    if not _loaded:
        for module in _PROVIDERS:
            importlib.import_module(module)
        _loaded = True


def list_models() -> list[str]:
    """Names of all registered networks, sorted."""
    _load_providers()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _load_providers()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def model_options_for(name: str, options: dict, patch_size: tuple[int, int, int] | None) -> dict:
    """``options`` plus the training patch for networks whose topology depends on it."""
    options = dict(options)
    if get_entry(name).uses_patch_size and patch_size is not None:
        options.setdefault("patch_size", tuple(patch_size))
    return options


def build_model(name: str, **options) -> nn.Module:
    """Build the network registered as ``name`` with ``options`` passed to its factory."""
    entry = get_entry(name)
    kwargs = {**entry.defaults, **options}
    try:
        return entry.factory(**kwargs)
    except TypeError as err:
        raise ConfigError(f"model {name!r} does not accept these options {sorted(options)}: {err}") from err


# ------------------------------------------------------------------------------------ from a run config
def num_classes_for(config: RunConfig) -> int:
    """Output channels of a run's network: 1 (sigmoid) for binary labels, background + classes otherwise."""
    from h2aseg.data.preprocess import PreprocessConfig

    return 1 if config.data.label_mode == "binary" else len(PreprocessConfig().label_values)


def preprocess_config_for(config: RunConfig) -> PreprocessConfig:
    """The preprocessing a run trains on (and its predictions must use): its grid spacing and label mode."""
    from h2aseg.data.preprocess import PreprocessConfig

    spacing = config.data.target_spacing
    return PreprocessConfig(
        target_spacing=tuple(spacing) if spacing else None,
        label_mode=config.data.label_mode,
        skip_checks=tuple(config.data.skip_content_checks),
        max_voxels=config.data.max_voxels,
    )


def build_network(config: RunConfig) -> nn.Module:
    """The network of a run config (``config.model`` with its options, the run's patch and class count)."""
    options = {"num_classes": num_classes_for(config), **config.model.options}
    return build_model(
        config.model.name, **model_options_for(config.model.name, options, tuple(config.train.patch))
    )
