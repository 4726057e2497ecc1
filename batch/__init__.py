"""The batch job: a folder or a Cloud Storage prefix of selfies turned into animals, offline.

`python -m batch` (`make batch`, the `batch` image, a Cloud Run job) runs the function's own
pipeline in worker processes, or calls a deployed function (`--function-url`), and writes each
result and one `manifest.jsonl` line per input and animal to OUTPUT (SPEC.md, "Batch serving").

It is a third deployable beside `api/` and `cloud_functions/`: it imports the function's package
(`avatar`, the pipeline) and, for `--user-id` only, the API's database models. Nothing imports
it. In a checkout and in the image the function's source folder sits next to this package; it
is put on the path here, because the development environment deliberately leaves it off (so
that the API process cannot import the function's code even by mistake).
"""

from __future__ import annotations

import sys
from pathlib import Path

FUNCTION_SOURCE = Path(__file__).resolve().parents[1] / "cloud_functions"
if FUNCTION_SOURCE.is_dir() and str(FUNCTION_SOURCE) not in sys.path:
    sys.path.append(str(FUNCTION_SOURCE))
