"""Networks: the UniFormer video encoder, the EF regression head, and the CoReEcho model with its config.

Submodules are imported on demand (``from coreecho.models.uniformer import uniformer_small``) so that
``import coreecho`` does not import torch.
"""
