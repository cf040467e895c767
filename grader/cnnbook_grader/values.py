"""Values as plain data: JSON specs plus ``.npy`` arrays, never pickle.

One codec for the three places values cross a trust boundary:

- the recorder (:mod:`oracle`) writes the grader's inputs of every call a check
  makes to a student's function;
- the harness in the sandbox (:mod:`runner`) reads those inputs and writes what
  the student's function returned;
- the trusted replay (:mod:`replay`) reads what the sandbox wrote (untrusted:
  sizes, depth and kinds are bounded, arrays are loaded with
  ``allow_pickle=False``) and compares the replayed inputs with the recorded ones.

A spec is a JSON list whose first item names its kind:

``["json", v]`` (None, bool, int, str, finite float), ``["float", "nan"]``,
``["npy", name, scalar]`` (a NumPy array, or a NumPy scalar when ``scalar``),
``["tensor", name]`` (a torch tensor, as its data), ``["tuple"|"list", [specs]]``,
``["dict", [[key, spec], ...]]`` (str or int keys), ``["generator", bit_generator, state]``
(a ``numpy.random.Generator``), ``["ref", call_key, path]`` (part of what an earlier
student call returned: a cache passed from one call into another), and, for
results only, ``["module", type]`` (an ``nn.Module``, kept in the sandbox) and
``["opaque", type]`` (anything else, kept in the sandbox).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np

MAX_DEPTH = 32
MAX_ITEMS = 100_000
MAX_FILE_BYTES = 64 * 2**20


class Unrepresentable(Exception):
    """A value the codec cannot write as plain data."""


def _is_tensor(value) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach") and hasattr(value, "cpu")


def _is_module(value) -> bool:
    try:
        import sys

        nn = sys.modules.get("torch.nn")
        return nn is not None and isinstance(value, nn.Module)
    except Exception:  # noqa: BLE001
        return False


class Encoder:
    """Turns a value into a spec; arrays are collected in ``self.arrays`` (name -> ndarray).

    strict: raise :class:`Unrepresentable` for anything that is not data (the recorder);
    otherwise modules and other objects become ``module``/``opaque`` specs (the sandbox).
    refs: id(object) -> (call key, path), for values an earlier student call returned.
    """

    def __init__(self, stem: str, strict: bool = True, refs: dict | None = None):
        self.stem = stem
        self.strict = strict
        self.refs = refs or {}
        self.arrays: dict[str, np.ndarray] = {}
        self.items = 0

    def _array(self, array: np.ndarray) -> str:
        name = f"{self.stem}_{len(self.arrays)}.npy"
        self.arrays[name] = array
        return name

    def encode(self, value, depth: int = 0, top: bool = True):
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS:
            raise Unrepresentable("nested too deeply or too large")
        if self.refs and id(value) in self.refs and not isinstance(value, (bool, int, float, str, type(None))):
            key, path = self.refs[id(value)]
            return ["ref", key, list(path)]
        if value is None or isinstance(value, (bool, str)):
            return ["json", value]
        if isinstance(value, int) and not isinstance(value, bool):
            return ["json", int(value)]
        if isinstance(value, float):
            return ["json", value] if math.isfinite(value) else ["float", repr(value)]
        if isinstance(value, np.ndarray):
            if value.dtype == object or value.dtype.hasobject:
                return self._other(value, "object array")
            return ["npy", self._array(np.array(value)), False]
        if isinstance(value, np.generic):
            if isinstance(value, np.object_):
                return self._other(value, "object scalar")
            return ["npy", self._array(np.asarray(value)), True]
        if _is_tensor(value):
            return ["tensor", self._array(value.detach().cpu().numpy().copy())]
        if isinstance(value, tuple) and type(value) is tuple:
            return ["tuple", [self.encode(v, depth + 1, False) for v in value]]
        if isinstance(value, list) and type(value) is list:
            return ["list", [self.encode(v, depth + 1, False) for v in value]]
        if isinstance(value, dict) and type(value) is dict:
            items = []
            for k, v in value.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    return self._other(value, "dict with non-string keys")
                items.append([k, self.encode(v, depth + 1, False)])
            return ["dict", items]
        if isinstance(value, np.random.Generator):
            bit = value.bit_generator
            return ["generator", type(bit).__name__, _jsonable(bit.state)]
        if _is_module(value):
            if self.strict:
                raise Unrepresentable(f"a module ({type(value).__name__})")
            return ["module", type(value).__name__]
        return self._other(value, type(value).__name__)

    def _other(self, value, why: str):
        if self.strict:
            raise Unrepresentable(why)
        return ["opaque", str(why)[:100]]


def _jsonable(state):
    """A bit generator's state (dicts of ints and strings) as JSON-ready data."""
    if isinstance(state, dict):
        return {str(k): _jsonable(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [_jsonable(v) for v in state]
    if isinstance(state, np.ndarray):
        return {"__array__": state.tolist(), "dtype": str(state.dtype)}
    if isinstance(state, np.generic):
        return state.item()
    return state


def _state(data):
    if isinstance(data, dict):
        if set(data) == {"__array__", "dtype"}:
            return np.asarray(data["__array__"], dtype=data["dtype"])
        return {k: _state(v) for k, v in data.items()}
    return data


def make_generator(name: str, state) -> np.random.Generator:
    allowed = {"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"}
    if name not in allowed:
        raise Unrepresentable(f"unknown bit generator {name!r}")
    bit = getattr(np.random, name)()
    bit.state = _state(state)
    return np.random.Generator(bit)


def save(folder: Path, spec_name: str, document: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``document`` as ``folder/spec_name`` and every array as ``folder/<name>``."""
    folder = Path(folder)
    for name, array in arrays.items():
        np.save(folder / name, array, allow_pickle=False)
    (folder / spec_name).write_text(json.dumps(document))


def read_untrusted(path: Path, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """The bytes of a regular file written by untrusted code (no symlink followed), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_array(folder: Path, name: str, trusted: bool = False) -> np.ndarray:
    import io

    if not isinstance(name, str) or "/" in name or name.startswith(".") or not name.endswith(".npy"):
        raise Unrepresentable(f"bad array name {name!r}")
    if trusted:
        return np.load(Path(folder) / name, allow_pickle=False)
    data = read_untrusted(Path(folder) / name)
    if data is None:
        raise Unrepresentable(f"missing or unreadable array {name}")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:  # noqa: BLE001
        raise Unrepresentable(f"unreadable array {name}: {type(error).__name__}") from None
    if not isinstance(array, np.ndarray) or array.dtype.hasobject:
        raise Unrepresentable(f"array {name} is not plain data")
    return array


class Decoder:
    """Turns specs back into values. ``refs(key, path)`` resolves ``ref`` specs;
    ``module(spec)``/``opaque(spec)`` make stand-ins for what stayed in the sandbox."""

    def __init__(self, folder: Path, trusted: bool = False, refs=None, module=None, opaque=None):
        self.folder = Path(folder)
        self.trusted = trusted
        self.refs = refs
        self.module = module
        self.opaque = opaque
        self.items = 0

    def decode(self, spec, depth: int = 0):
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS or not isinstance(spec, list) or not spec:
            raise Unrepresentable("malformed value")
        kind = spec[0]
        if kind == "json" and len(spec) == 2:
            value = spec[1]
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            raise Unrepresentable("malformed JSON value")
        if kind == "float" and len(spec) == 2 and spec[1] in ("nan", "inf", "-inf"):
            return float(spec[1])
        if kind == "npy" and len(spec) == 3:
            array = load_array(self.folder, spec[1], self.trusted)
            return array[()] if spec[2] and array.ndim == 0 else array
        if kind == "tensor" and len(spec) == 2:
            import torch

            return torch.from_numpy(np.array(load_array(self.folder, spec[1], self.trusted)))
        if kind in ("tuple", "list") and len(spec) == 2 and isinstance(spec[1], list):
            items = [self.decode(s, depth + 1) for s in spec[1]]
            return tuple(items) if kind == "tuple" else items
        if kind == "dict" and len(spec) == 2 and isinstance(spec[1], list):
            out = {}
            for pair in spec[1]:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))):
                    raise Unrepresentable("malformed dict")
                out[pair[0]] = self.decode(pair[1], depth + 1)
            return out
        if kind == "generator" and len(spec) == 3:
            return make_generator(spec[1], spec[2])
        if kind == "ref" and len(spec) == 3 and self.refs is not None:
            return self.refs(spec[1], spec[2])
        if kind == "module" and self.module is not None:
            return self.module(spec)
        if kind in ("module", "opaque") and self.opaque is not None:
            return self.opaque(spec)
        raise Unrepresentable(f"unexpected value kind {str(kind)[:40]!r}")


def walk(value, path=(), depth: int = 0):
    """(path, part) for ``value`` and every part of its tuples, lists and dicts (for references)."""
    yield path, value
    if depth > MAX_DEPTH:
        return
    if type(value) in (tuple, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index), depth + 1)
    elif type(value) is dict:
        for key, item in value.items():
            yield from walk(item, (*path, key), depth + 1)


def part(value, path):
    for step in path:
        value = value[step]
    return value


def same(spec_a, arrays_a: dict, spec_b, load_b) -> bool:
    """Whether two encoded values are identical (arrays bit for bit, same dtype and shape)."""
    if not (isinstance(spec_a, list) and isinstance(spec_b, list)) or not spec_a or not spec_b:
        return spec_a == spec_b
    if spec_a[0] != spec_b[0]:
        return False
    kind = spec_a[0]
    if kind in ("npy", "tensor"):
        a, b = arrays_a[spec_a[1]], load_b(spec_b[1])
        if kind == "npy" and spec_a[2] != spec_b[2]:
            return False
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if kind in ("tuple", "list"):
        return len(spec_a[1]) == len(spec_b[1]) and all(
            same(x, arrays_a, y, load_b) for x, y in zip(spec_a[1], spec_b[1]))
    if kind == "dict":
        return len(spec_a[1]) == len(spec_b[1]) and all(
            ka == kb and same(x, arrays_a, y, load_b) for (ka, x), (kb, y) in zip(spec_a[1], spec_b[1]))
    return spec_a == spec_b
