"""LeNet-5, the 1998 original: LeCun, Bottou, Bengio and Haffner (references.bib: ``lecun1998gradient``), section II.B.

Layers and shapes for the paper's 32 x 32 input (``x: (N, 1, 32, 32)``):

=====  ========================================  ===============  ==========
layer  what                                      output           parameters
=====  ========================================  ===============  ==========
C1     6 convolutions 5x5                        (N, 6, 28, 28)   156
S2     2x2 subsampling, a coefficient and a bias  (N, 6, 14, 14)   12
       per map, then the squashing function
C3     16 convolutions 5x5, each on a subset of   (N, 16, 10, 10)  1,516
       S2's maps (Table I, :data:`C3_TABLE`)
S4     as S2                                     (N, 16, 5, 5)    32
C5     120 convolutions 5x5                      (N, 120, 1, 1)   48,120
F6     84 fully connected units                  (N, 84)          10,164
out    ``num_classes`` outputs                    (N, 10)          850
=====  ========================================  ===============  ==========

60,850 parameters in all (the paper: "60,000 trainable parameters"). The
squashing function is the paper's scaled tanh ``f(a) = A tanh(S a)`` with
``A = 1.7159`` and ``S = 2/3`` (its Appendix A). Two simplifications: a
subsampling unit *averages* its 2x2 inputs (the paper adds them; the trainable
coefficient absorbs the factor 4), and the output layer is a fully connected
layer trained with cross-entropy instead of the paper's Euclidean RBF units with
fixed codes (the same 84 x 10 weights, plus 10 biases).

The 28 x 28 variant (``input_size=28``, for MNIST and Fashion-MNIST as they
come) pads C1's input by 2 pixels, so every later shape is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import check_num_classes, check_positive, constructor, layer_kit

__all__ = ["C3_TABLE", "ScaledTanh", "Subsampling", "PartialConv2d", "LeNet5", "lenet5"]

#: LeCun et al. 1998, Table I: for each of C3's 16 feature maps, the S2 maps it reads.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


class ScaledTanh(nn.Module):
    """LeNet-5's squashing function ``A tanh(S x)``, A = 1.7159, S = 2/3. x: any shape -> same shape."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2 / 3, layers: str = "torch"):
        super().__init__()
        self.amplitude, self.slope = amplitude, slope
        self.tanh = layer_kit(layers).Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * self.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4g}"


class Subsampling(nn.Module):
    """S2 / S4: x: (N, C, H, W) -> (N, C, H / 2, W / 2), ``weight[c] * mean(2x2 window) + bias[c]``.

    weight, bias: (C,), one trainable coefficient and bias per feature map.
    """

    def __init__(self, channels: int, layers: str = "torch"):
        super().__init__()
        self.pool = layer_kit(layers).AvgPool2d(2)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """C3: a convolution where output map ``o`` reads only the input maps ``table[o]``.

    x: (N, C_in, H, W) -> (N, len(table), H - K + 1, W - K + 1).
    weight: (connections, K, K), one kernel per (output, input) pair of the table,
    so the parameter count is the paper's (60 kernels of 5x5 plus 16 biases =
    1,516 for C3); bias: (len(table),). The forward pass scatters the kernels
    into a dense ``(C_out, C_in, K, K)`` kernel, zero where the table has no
    connection, and convolves with it.
    """

    def __init__(self, in_channels: int, table, kernel_size: int = 5, layers: str = "torch"):
        super().__init__()
        pairs = [(out, inp) for out, inputs in enumerate(table) for inp in inputs]
        if any(not 0 <= inp < in_channels for _, inp in pairs):
            raise ValueError(f"PartialConv2d: the table names input maps outside 0..{in_channels - 1}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, len(table), kernel_size
        self.table, self.pairs = tuple(tuple(inputs) for inputs in table), pairs
        self.register_buffer("connections", torch.tensor(pairs, dtype=torch.long).T.contiguous(), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(len(table)))
        self._conv2d = F.conv2d if layers == "torch" else _ops_conv2d()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in +-2.4 / fan_in, fan_in the inputs of each unit (LeCun et al. 1998, Appendix A)."""
        with torch.no_grad():
            for out, inputs in enumerate(self.table):
                bound = 2.4 / (len(inputs) * self.kernel_size ** 2)
                rows = [index for index, (o, _) in enumerate(self.pairs) if o == out]
                self.weight[rows[0]:rows[-1] + 1].uniform_(-bound, bound)
                self.bias[out].uniform_(-bound, bound)

    def dense_weight(self) -> torch.Tensor:
        """The kernels as a ``(C_out, C_in, K, K)`` tensor, zero where the table has no connection."""
        shape = (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        dense = self.weight.new_zeros(shape)
        return dense.index_put((self.connections[0], self.connections[1]), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv2d(x, self.dense_weight(), self.bias)

    def count_macs(self, inputs, output) -> int:
        """Multiply-accumulates of one call: each output value is a dot product over its own connections only
        (:func:`cnnbook.shapes.summarize` asks for this). 150,000 for C3 on one image."""
        return output.numel() // self.out_channels * self.weight.numel()

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, " \
               f"connections={self.weight.shape[0]}"


def _ops_conv2d():
    from cnnbook.ops import conv2d  # noqa: PLC0415

    return conv2d


class LeNet5(nn.Module):
    """LeNet-5. x: (N, in_channels, input_size, input_size) -> logits (N, num_classes).

    input_size: 32 (the paper) or 28 (C1 pads by 2). A different spatial size raises ``ValueError``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "lenet5")
        check_positive("in_channels", in_channels, "lenet5")
        if input_size not in (28, 32):
            raise ValueError(f"lenet5: input_size must be 32 (the paper's) or 28, got {input_size!r}")
        self.input_size, self.in_channels = input_size, in_channels
        self.c1 = kit.Conv2d(in_channels, 6, 5, padding=(32 - input_size) // 2)
        self.act1 = ScaledTanh(layers=layers)
        self.s2 = Subsampling(6, layers=layers)
        self.act2 = ScaledTanh(layers=layers)
        self.c3 = PartialConv2d(6, C3_TABLE, 5, layers=layers)
        self.act3 = ScaledTanh(layers=layers)
        self.s4 = Subsampling(16, layers=layers)
        self.act4 = ScaledTanh(layers=layers)
        self.c5 = kit.Conv2d(16, 120, 5)
        self.act5 = ScaledTanh(layers=layers)
        self.f6 = kit.Linear(120, 84)
        self.act6 = ScaledTanh(layers=layers)
        self.output = kit.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"lenet5 built for input (N, {', '.join(map(str, expected))}) got shape {tuple(x.shape)}"
                + ("; use lenet5(input_size=28) for 28 x 28 images" if x.shape[-2:] == (28, 28) else "")
            )
        x = self.act2(self.s2(self.act1(self.c1(x))))
        x = self.act4(self.s4(self.act3(self.c3(x))))
        x = self.act5(self.c5(x))
        return self.output(self.act6(self.f6(torch.flatten(x, 1))))


@constructor
def lenet5(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 32, layers: str = "torch") -> LeNet5:
    """LeNet-5 (LeCun et al. 1998) for ``input_size`` 32 (the original) or 28; 60,850 parameters."""
    return LeNet5(num_classes, in_channels, input_size, layers)
