"""Networks: the UniFormer video encoder, the EF regression head, and the CoReEcho model with its config.

Submodules are imported on demand (``from coreecho.models.uniformer import uniformer_small``) so that
``import coreecho`` does not import torch.
"""

from coreecho._lazy import lazy_exports

__all__ = ["build_model", "ENCODER_PRESETS", "resolve_encoder"]

__getattr__, __dir__ = lazy_exports(__name__, {name: "coreecho.models.build" for name in __all__})
