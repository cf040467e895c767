"""cnnbook: the library behind the CNN course book.

Modules (one idea each):

- :mod:`cnnbook.shapes`     output sizes, parameter counts, MACs, receptive fields
- :mod:`cnnbook.reference`  NumPy reference layers, forward ``(out, cache)`` / backward ``(dout, cache)``
- :mod:`cnnbook.gradcheck`  numeric gradients and the one definition of relative error
- :mod:`cnnbook.grading`    check helpers used by exercise notebooks and the instructor pipeline
"""

__version__ = "0.1.0"
