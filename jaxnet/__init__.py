"""jaxnet: feed-forward neural networks in JAX, as the document writes them.

Parameters are plain pytrees (a list of ``{"W", "b"}`` dicts), the forward pass and the cost are
pure functions, every backpropagation formula is also written by hand, and `check_gradients`
proves the two agree (and agree with finite differences).
"""

from . import activations as activations
from . import formulas as formulas
from . import initializers as initializers
from . import losses as losses
from .gradcheck import GradientReport as GradientReport
from .gradcheck import LeafReport as LeafReport
from .gradcheck import TaylorResult as TaylorResult
from .gradcheck import check_grad as check_grad
from .gradcheck import check_gradients as check_gradients
from .gradcheck import taylor_test as taylor_test
from .network import MLP as MLP
from .network import Perceptron as Perceptron

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Perceptron",
    "GradientReport",
    "LeafReport",
    "TaylorResult",
    "activations",
    "check_grad",
    "check_gradients",
    "formulas",
    "initializers",
    "losses",
    "taylor_test",
]
