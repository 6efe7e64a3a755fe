"""An XGBoost model run through libxgboost's own C API (c_api.h), without importing the
`xgboost` Python package: that package pulls in scikit-learn, pandas and scipy on import
(about a second), while the library it wraps loads in milliseconds. A one-order command
(`mlkit predict fraud`) pays only the library.

The calls are the ones the Python package makes for `Booster.inplace_predict` (values or
margins from a dense matrix) and for `Booster.predict` on a `DMatrix` (margins or exact tree
SHAP contributions), with the same JSON configurations, so the figures are the package's
bit for bit (`tests/test_fraud_booster.py`).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import math
import threading
from pathlib import Path

import numpy as np

from ..errors import MlkitError

# XGBoost's prediction types (the `type` of a prediction's JSON configuration).
PREDICTION_TYPES = {"value": 0, "margin": 1, "contributions": 2}
_MISSING = math.nan  # XGBoost's default: NaN marks a missing feature
_bst_ulong = ctypes.c_uint64
_LIBRARY: ctypes.CDLL | None = None
_LOCK = threading.Lock()


def library_path() -> Path:
    """libxgboost of the installed `xgboost` package, found without executing the package."""
    try:
        spec = importlib.util.find_spec("xgboost")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        for name in ("libxgboost.so", "libxgboost.dylib", "xgboost.dll"):
            candidate = Path(folder) / "lib" / name
            if candidate.is_file():
                return candidate
    raise MlkitError(
        "cannot find libxgboost: the xgboost package is not installed"
        if spec is None
        else f"cannot find libxgboost in the xgboost package at {folders[0] if folders else '?'}",
        hint="install it: pip install xgboost",
    )


def _library() -> ctypes.CDLL:
    global _LIBRARY
    with _LOCK:
        if _LIBRARY is None:
            path = library_path()
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                raise MlkitError(
                    f"cannot load libxgboost ({path}): {exc}",
                    hint="reinstall it: pip install --force-reinstall xgboost",
                ) from None
            lib.XGBGetLastError.restype = ctypes.c_char_p
            _LIBRARY = lib
    return _LIBRARY


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != 0:
        raise MlkitError(
            f"XGBoost failed: {lib.XGBGetLastError().decode(errors='replace').strip()}",
            hint="the model artifact may be damaged or from an incompatible XGBoost version",
        )


def _config(**settings) -> bytes:
    """A C function's JSON configuration, as the Python package writes it (NaN included)."""
    return json.dumps(settings).encode()


def _array_interface(matrix: np.ndarray) -> bytes:
    """The dense matrix described as numpy's array interface, JSON: what the C API reads."""
    return json.dumps(
        {
            "data": [matrix.ctypes.data, True],
            "shape": list(matrix.shape),
            "strides": None,
            "typestr": matrix.dtype.str,
            "version": 3,
        }
    ).encode()


def _dense(matrix) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"expected a matrix (rows, features), got shape {matrix.shape}")
    if matrix.dtype not in (np.float32, np.float64):
        matrix = matrix.astype(np.float32)
    return np.ascontiguousarray(matrix)


class NativeBooster:
    """An XGBoost booster loaded from a saved model's bytes (UBJ or JSON)."""

    def __init__(self, model: bytes | bytearray):
        self._lib = _library()
        self._handle = ctypes.c_void_p()
        _check(
            self._lib, self._lib.XGBoosterCreate(None, _bst_ulong(0), ctypes.byref(self._handle))
        )
        self._model = buffer = bytes(model)
        _check(
            self._lib,
            self._lib.XGBoosterLoadModelFromBuffer(
                self._handle, ctypes.c_char_p(buffer), _bst_ulong(len(buffer))
            ),
        )

    def __reduce__(self):
        # A copy loads its own booster: two objects freeing one handle would crash.
        return NativeBooster, (self._model,)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._lib.XGBoosterFree(handle)
            self._handle = None

    def inplace_predict(self, matrix, *, rounds: int, kind: str = "value") -> np.ndarray:
        """Values or margins of the rows of a dense matrix, as `Booster.inplace_predict`
        gives them with `iteration_range=(0, rounds)`."""
        if kind not in ("value", "margin"):
            raise ValueError(f"inplace prediction gives values or margins, not {kind!r}")
        matrix = _dense(matrix)
        config = _prediction_config(kind, rounds, missing=_MISSING, cache_id=0)
        return self._predicted(
            lambda *out: self._lib.XGBoosterPredictFromDense(
                self._handle,
                _array_interface(matrix),
                config,
                None,  # no proxy DMatrix: no base margin
                *out,
            )
        )

    def predict(self, matrix, *, rounds: int, kind: str = "value") -> np.ndarray:
        """Values, margins or contributions (exact tree SHAP, the bias last) of the rows of
        a dense matrix through a DMatrix, as `Booster.predict(DMatrix(matrix), ...)` gives
        them with `iteration_range=(0, rounds)`."""
        matrix = _dense(matrix)
        data = ctypes.c_void_p()
        _check(
            self._lib,
            self._lib.XGDMatrixCreateFromDense(
                _array_interface(matrix),
                _config(missing=_MISSING, nthread=-1, data_split_mode=0),
                ctypes.byref(data),
            ),
        )
        try:
            config = _prediction_config(kind, rounds)
            return self._predicted(
                lambda *out: self._lib.XGBoosterPredictFromDMatrix(self._handle, data, config, *out)
            )
        finally:
            self._lib.XGDMatrixFree(data)

    def _predicted(self, call) -> np.ndarray:
        """`call(shape, dims, result)` of a C prediction function, checked, as an array."""
        shape, dims = ctypes.POINTER(_bst_ulong)(), _bst_ulong()
        result = ctypes.POINTER(ctypes.c_float)()
        _check(self._lib, call(ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(result)))
        return _output(shape, dims, result)


def _prediction_config(kind: str, rounds: int, **extra) -> bytes:
    """A prediction's JSON configuration: its type and the first `rounds` trees."""
    return _config(
        type=PREDICTION_TYPES[kind],
        training=False,
        iteration_begin=0,
        iteration_end=int(rounds),
        strict_shape=False,
        **extra,
    )


def _output(shape, dims, result) -> np.ndarray:
    """A copy of the prediction buffer the booster owns (its next call reuses it)."""
    extent = tuple(int(shape[i]) for i in range(dims.value))
    count = math.prod(extent)
    values = np.ctypeslib.as_array(result, shape=(count,)) if count else np.empty(0, np.float32)
    return values.copy().reshape(extent)
