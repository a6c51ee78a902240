"""Layers: each family in its own module, each forward beside its hand-written backward.

See `jaxnet.layers.base` for the protocol (`init`, `forward`, `backward`) and `docs/layers.md`
for the derivations.

* `dense`: `Dense` (the document's fully connected layer; `MLP` uses it too)
* `conv`: `Conv2D`, `MaxPool2D`, `AvgPool2D`, `Flatten`
* `recurrent`: `RNN`, `LSTM`, `GRU` (backpropagation through time)
* `embedding`: `Embedding`, `PositionalEmbedding`
* `normalization`: `LayerNorm`
* `attention`: `scaled_dot_product_attention`, `MultiHeadAttention`, `TransformerBlock`
* `registry`: `register` a layer of your own so that checkpoints rebuild it
* `protocol`: the protocol's rules, checked where `Sequential` meets a layer
"""

from .attention import MultiHeadAttention as MultiHeadAttention
from .attention import TransformerBlock as TransformerBlock
from .attention import scaled_dot_product_attention as scaled_dot_product_attention
from .attention import (
    scaled_dot_product_attention_backward as scaled_dot_product_attention_backward,
)
from .base import activation_backward as activation_backward
from .base import activation_forward as activation_forward
from .conv import AvgPool2D as AvgPool2D
from .conv import Conv2D as Conv2D
from .conv import Flatten as Flatten
from .conv import MaxPool2D as MaxPool2D
from .dense import Dense as Dense
from .embedding import Embedding as Embedding
from .embedding import PositionalEmbedding as PositionalEmbedding
from .normalization import LayerNorm as LayerNorm
from .recurrent import GRU as GRU
from .recurrent import LSTM as LSTM
from .recurrent import RNN as RNN
from .registry import register as register

# Every layer type by class name, for checkpoints to rebuild an architecture (`register` adds
# a user's layer).
LAYER_TYPES = {cls.__name__: cls for cls in (
    Dense, Conv2D, MaxPool2D, AvgPool2D, Flatten, RNN, LSTM, GRU, Embedding, PositionalEmbedding,
    LayerNorm, MultiHeadAttention, TransformerBlock)}
