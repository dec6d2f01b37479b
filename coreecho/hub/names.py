"""File names of a coreecho model folder, in a module without dependencies (the registry reads them without
importing torch).

Example:
    >>> CONFIG_NAME, WEIGHTS_NAME
    ('config.json', 'model.safetensors')
"""

from __future__ import annotations

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME"]

#: The model's configuration (architecture, preprocessing, licence, metadata).
CONFIG_NAME = "config.json"
#: The model's weights.
WEIGHTS_NAME = "model.safetensors"
