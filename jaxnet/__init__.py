"""jaxnet: feed-forward neural networks in JAX, as the document writes them.

Parameters are plain pytrees (a list of ``{"W", "b"}`` dicts), the forward pass and the cost are
pure functions, every backpropagation formula is also written by hand, and `check_gradients`
proves the two agree (and agree with finite differences).
"""

__version__ = "0.1.0"

from . import activations as activations
from . import data as data
from . import distributed as distributed
from . import formulas as formulas
from . import gan as gan
from . import initializers as initializers
from . import layers as layers
from . import losses as losses
from . import models as models
from . import text as text
from .checkpoint import Checkpoint as Checkpoint
from .checkpoint import CheckpointError as CheckpointError
from .checkpoint import load as load
from .checkpoint import load_checkpoint as load_checkpoint
from .checkpoint import save as save
from .gan import GAN as GAN
from .gradcheck import CheckMemoryError as CheckMemoryError
from .gradcheck import GradientReport as GradientReport
from .gradcheck import LeafReport as LeafReport
from .gradcheck import TaylorResult as TaylorResult
from .gradcheck import check_grad as check_grad
from .gradcheck import check_gradients as check_gradients
from .gradcheck import taylor_test as taylor_test
from .layercheck import GradientCheckWarning as GradientCheckWarning
from .layercheck import check_layer as check_layer
from .layers import GRU as GRU
from .layers import LSTM as LSTM
from .layers import RNN as RNN
from .layers import AvgPool2D as AvgPool2D
from .layers import Conv2D as Conv2D
from .layers import Dense as Dense
from .layers import Embedding as Embedding
from .layers import Flatten as Flatten
from .layers import LayerNorm as LayerNorm
from .layers import MaxPool2D as MaxPool2D
from .layers import MultiHeadAttention as MultiHeadAttention
from .layers import PositionalEmbedding as PositionalEmbedding
from .layers import TransformerBlock as TransformerBlock
from .metrics import accuracy as accuracy
from .metrics import mse as mse
from .metrics import predict as predict
from .metrics import r2 as r2
from .network import MLP as MLP
from .network import Perceptron as Perceptron
from .parallel import ModeReport as ModeReport
from .parallel import check_execution_modes as check_execution_modes
from .parallel import data_mesh as data_mesh
from .parallel import fit_many as fit_many
from .perceptron_rule import PerceptronResult as PerceptronResult
from .perceptron_rule import perceptron_learning as perceptron_learning
from .perceptron_rule import predict_perceptron as predict_perceptron
from .sequential import Sequential as Sequential
from .training import DivergenceError as DivergenceError
from .training import DivergenceWarning as DivergenceWarning
from .training import fit as fit

__all__ = [
    "MLP",
    "Sequential",
    "GAN",
    "gan",
    "models",
    "text",
    "Dense",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "Flatten",
    "RNN",
    "LSTM",
    "GRU",
    "Embedding",
    "PositionalEmbedding",
    "LayerNorm",
    "MultiHeadAttention",
    "TransformerBlock",
    "layers",
    "ModeReport",
    "check_execution_modes",
    "data_mesh",
    "fit_many",
    "Checkpoint",
    "CheckMemoryError",
    "CheckpointError",
    "DivergenceError",
    "DivergenceWarning",
    "GradientReport",
    "LeafReport",
    "Perceptron",
    "PerceptronResult",
    "TaylorResult",
    "accuracy",
    "activations",
    "check_grad",
    "check_gradients",
    "check_layer",
    "GradientCheckWarning",
    "data",
    "distributed",
    "fit",
    "formulas",
    "initializers",
    "load",
    "load_checkpoint",
    "losses",
    "mse",
    "perceptron_learning",
    "predict",
    "predict_perceptron",
    "r2",
    "save",
    "taylor_test",
]
