"""Independent float64 NumPy references for PyTorch's classification losses.

Written from the mathematics and torch's documented semantics; this package never imports
torch, so agreement with torch is evidence rather than an echo. The public functions mirror
``torch.nn.functional``'s names and keyword arguments, take NumPy arrays (dtypes matter for
the checks torch makes) and return float64 arrays.
"""

from .activations import log_sigmoid, log_softmax, sigmoid, softmax, softplus
from .binary import LOG_CLAMP, binary_cross_entropy, binary_cross_entropy_with_logits
from .categorical import cross_entropy, nll_loss
from .focal import sigmoid_focal_loss
from .kl_div import kl_div

__all__ = [
    "LOG_CLAMP",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "kl_div",
    "log_sigmoid",
    "log_softmax",
    "nll_loss",
    "sigmoid",
    "sigmoid_focal_loss",
    "softmax",
    "softplus",
]
