"""nbgrad.nn: modules, layers, losses, initializers (PyTorch's torch.nn API)."""
from . import functional, init, utils
from .module import Module
from .parameter import Parameter
from .layers import (Identity, Linear, Embedding, EmbeddingBag, Sequential, ReLU, Sigmoid, Tanh, Softmax,
                     LogSoftmax, Softplus, Flatten, Dropout, GELU, SiLU, LeakyReLU, ELU, Hardtanh,
                     ReLU6, Unflatten, CELU, SELU, Mish, Hardswish, Hardsigmoid, LogSigmoid,
                     Softsign, Tanhshrink, Softshrink, Hardshrink, Threshold, Softmin, Softmax2d,
                     GLU, PReLU, RReLU, Bilinear)
from .container import ModuleList, ModuleDict, ParameterList, ParameterDict
from .loss import (MSELoss, L1Loss, BCELoss, BCEWithLogitsLoss, NLLLoss, CrossEntropyLoss,
                   SmoothL1Loss, HuberLoss, KLDivLoss, SoftMarginLoss, MarginRankingLoss,
                   HingeEmbeddingLoss, PoissonNLLLoss, GaussianNLLLoss, CosineEmbeddingLoss,
                   TripletMarginLoss, MultiLabelSoftMarginLoss, MultiMarginLoss)
from .distance import PairwiseDistance, CosineSimilarity
from .resample import (ZeroPad1d, ZeroPad2d, ZeroPad3d, ConstantPad1d, ConstantPad2d,
                       ConstantPad3d, ReflectionPad1d, ReflectionPad2d, ReflectionPad3d,
                       ReplicationPad1d, ReplicationPad2d, ReplicationPad3d, CircularPad1d,
                       CircularPad2d, CircularPad3d, Upsample, UpsamplingNearest2d,
                       UpsamplingBilinear2d, Dropout1d, Dropout2d, Dropout3d, AlphaDropout,
                       FeatureAlphaDropout, PixelShuffle, PixelUnshuffle)
from .normalization import (BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm, InstanceNorm1d,
                            InstanceNorm2d, InstanceNorm3d, LocalResponseNorm)
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, Fold, Unfold
from .pooling import (MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d,
                      AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d)
from .rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell
from .attention import MultiheadAttention
from .transformer import (Transformer, TransformerEncoder, TransformerDecoder,
                          TransformerEncoderLayer, TransformerDecoderLayer)

__all__ = ["functional", "init", "utils", "Module", "Parameter", "Identity", "Linear", "Embedding",
           "EmbeddingBag", "Sequential", "ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Flatten",
           "Dropout",
           "Softplus", "GELU", "SiLU", "LeakyReLU", "ELU", "Hardtanh", "ReLU6",
           "CELU", "SELU", "Mish", "Hardswish", "Hardsigmoid", "LogSigmoid", "Softsign",
           "Tanhshrink", "Softshrink", "Hardshrink", "Threshold", "Softmin", "Softmax2d", "GLU",
           "PReLU", "RReLU",
           "Unflatten", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
           "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss", "CrossEntropyLoss",
           "SmoothL1Loss", "HuberLoss", "KLDivLoss", "SoftMarginLoss", "MarginRankingLoss",
           "HingeEmbeddingLoss", "PoissonNLLLoss", "GaussianNLLLoss", "CosineEmbeddingLoss",
           "TripletMarginLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss", "PairwiseDistance",
           "CosineSimilarity",
           "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
           "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d",
           "ReplicationPad2d", "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d",
           "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "Dropout1d", "Dropout2d",
           "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
           "PixelShuffle", "PixelUnshuffle", "Fold", "Unfold",
           "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
           "InstanceNorm2d", "InstanceNorm3d", "LocalResponseNorm", "Bilinear", "Conv1d", "Conv2d",
           "ConvTranspose1d", "ConvTranspose2d",
           "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
           "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
           "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
           "MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
           "TransformerEncoderLayer", "TransformerDecoderLayer"]
