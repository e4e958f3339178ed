"""nbgrad.nn: modules, layers, losses, initializers (PyTorch's torch.nn API)."""
from . import functional, init, utils
from .module import Module
from .parameter import Parameter
from .layers import (Identity, Linear, Embedding, Sequential, ReLU, Sigmoid, Tanh, Softmax,
                     LogSoftmax, Softplus, Flatten, Dropout, GELU, SiLU, LeakyReLU, ELU, Hardtanh,
                     ReLU6, Unflatten)
from .container import ModuleList, ModuleDict, ParameterList, ParameterDict
from .loss import MSELoss, L1Loss, BCELoss, BCEWithLogitsLoss, NLLLoss, CrossEntropyLoss

__all__ = ["functional", "init", "utils", "Module", "Parameter", "Identity", "Linear", "Embedding",
           "Sequential", "ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Flatten", "Dropout",
           "Softplus", "GELU", "SiLU", "LeakyReLU", "ELU", "Hardtanh", "ReLU6",
           "Unflatten", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
           "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss", "CrossEntropyLoss"]
