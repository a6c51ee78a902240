"""Layers: each family in its own module, each forward beside its hand-written backward.

See `jaxnet.layers.base` for the protocol (`init`, `forward`, `backward`).
"""

from .base import activation_backward as activation_backward
from .base import activation_forward as activation_forward
from .dense import Dense as Dense

# Every layer type by class name, for checkpoints to rebuild an architecture.
LAYER_TYPES = {cls.__name__: cls for cls in (Dense,)}
