"""What the sandbox does at a check: call the student's code on the grader's inputs, write the values.

Imported inside the student's kernel (so the student can break it, which only
costs them the check) and by the recorder, which writes the instructor's
results in the same format. Nothing here compares or scores: the result of a
call is written as plain data (:mod:`values`) to ``out/<key>.json`` and
``out/<key>_<n>.npy``:

``{"result": spec}`` or ``{"raised": [exception class names, most specific first], "message": text}``,
plus ``"after": {argument index: spec}`` for array and random-generator arguments the call changed.
"""

from __future__ import annotations

import json

import numpy as np

from .values import Decoder, Encoder, part, save

MESSAGE_CAP = 2000


def _changed(before, value) -> bool:
    if isinstance(value, np.ndarray):
        return not (isinstance(before, np.ndarray) and before.shape == value.shape and before.dtype == value.dtype
                    and np.array_equal(before, value, equal_nan=value.dtype.kind in "fc"))
    if isinstance(value, np.random.Generator):
        return before != json.dumps(value.bit_generator.state, default=str)
    return False


def outcome(key: str, result, error, args=(), mutable=None) -> tuple[dict, dict]:
    """The document and arrays that describe one call's result (or exception) and changed arguments."""
    encoder = Encoder(key, strict=False)
    if error is not None:
        names = [c.__name__ for c in type(error).__mro__]
        document = {"raised": names[:20], "message": str(error)[:MESSAGE_CAP]}
    else:
        try:
            document = {"result": encoder.encode(result)}
        except Exception as why:  # noqa: BLE001 - too large or too deep
            document = {"result": ["opaque", str(why)[:100]]}
    after = {}
    for index, before in (mutable or {}).items():
        if before is not None and index < len(args) and _changed(before, args[index]):
            try:
                after[str(index)] = encoder.encode(args[index])
            except Exception:  # noqa: BLE001
                continue
    if after:
        document["after"] = after
    return document, encoder.arrays


def call(request: dict, namespace: dict, forbid: list[str] = (), task: str = "") -> None:
    """Run one recorded call in the student's kernel; write its outcome to ``out/``."""
    import contextlib
    import functools
    import random

    from .oracle import _snapshot

    results = namespace.setdefault("__cnnbook_results__", {})
    key = request["key"]
    decoder = Decoder("in", trusted=True, refs=lambda k, p: part(results[k], p))
    args, kwargs, function, error = [], {}, None, None
    try:
        args = [decoder.decode(s) for s in request["args"]]
        kwargs = {k: decoder.decode(s) for k, s in request["kwargs"].items()}
        if request.get("name"):
            if request["name"] not in namespace:
                raise NameError(f"name {request['name']!r} is not defined")
            function = namespace[request["name"]]
        else:
            function = decoder.decode(request["target"])
    except Exception as problem:  # noqa: BLE001 - e.g. a reference to a call that failed
        error = problem
    mutable = {i: _snapshot(a) for i, a in enumerate(args)}
    result = None
    if error is None:
        random.seed(0)
        np.random.seed(0)
        guard = contextlib.nullcontext()
        import sys

        def loaded(name):  # never import torch just to trap it
            owner, _, attribute = name.rpartition(".")
            return name in sys.modules or (owner in sys.modules and callable(getattr(sys.modules[owner], attribute, None)))

        forbid = [n for n in forbid if loaded(n)]
        if forbid:
            from cnnbook.checks import forbid_calls

            guard = forbid_calls(forbid, task=task)
        grad = contextlib.nullcontext()
        mode = request.get("mode")
        try:
            if mode:
                import torch

                function.train(bool(mode["training"]))
                grad = torch.set_grad_enabled(bool(mode["grad"]))
            if request.get("method") == "probe_module":  # a check probing the student's module
                from cnnbook.checks import probe_module

                function = functools.partial(probe_module, function)
            with guard, grad:
                result = function(*args, **kwargs)
        except Exception as problem:  # noqa: BLE001 - the student's exception is their result
            error = problem
    if error is None:
        results[key] = result
    document, arrays = outcome(key, result, error, args, mutable)
    save("out", f"{key}.json", document, arrays)
