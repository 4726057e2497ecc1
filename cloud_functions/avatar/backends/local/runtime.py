"""LiteRT interpreters, one set per thread: an interpreter must never serve two threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from avatar.errors import ModelsMissing
from avatar.models import model_path

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

FloatArray = npt.NDArray[np.float32]


class ModelRunner:
    """Runs the local models; each thread lazily builds its own single-threaded interpreters."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._local = threading.local()

    def _interpreter(self, name: str) -> Interpreter:
        cache: dict[str, Any] = self._local.__dict__.setdefault("interpreters", {})
        if name not in cache:
            cache[name] = self._load(name)
        interpreter: Interpreter = cache[name]
        return interpreter

    def _load(self, name: str) -> Interpreter:
        path = model_path(name, self.model_dir)  # ModelsMissing names `make models`
        try:
            from ai_edge_litert.interpreter import Interpreter  # heavy: import on first use only
        except ImportError as exc:
            msg = "ai-edge-litert is not installed: the local backends need requirements.txt"
            raise ModelsMissing(msg) from exc

        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        return interpreter

    def input_size(self, name: str) -> tuple[int, int]:
        """The model's (width, height) input size."""
        shape = self._interpreter(name).get_input_details()[0]["shape"]
        return int(shape[2]), int(shape[1])

    def run(self, name: str, tensor: FloatArray) -> list[FloatArray]:
        """Invoke a model on one NHWC float32 tensor; outputs in the model's declared order."""
        interpreter = self._interpreter(name)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
