"""Build the public routing evaluation from real user utterances that a PyPI package ships.

Source: the sdist of `bigbench==1.0.0` (BIG-bench, Apache License 2.0), fetched with
`pip download --no-deps bigbench==1.0.0` (never installed: it is 358 MB and pins TensorFlow).
Its tasks are read straight from the tarball:

  bigbench/benchmark_tasks/intent_recognition/task.json   693 crowd-sourced voice-assistant
      queries of the SNIPS NLU benchmark (Coucke et al. 2018; released by Snips under CC0 1.0),
      7 intents. Five intents are the routes; the other two (play_music, search_creative_work)
      are out of scope *in the same register*: the hardest out-of-scope items there are.
  bigbench/benchmark_tasks/hhh_alignment/*/task.json      requests people wrote to an assistant
      (Askell et al. 2021): out of scope, other sources.
  bigbench/benchmark_tasks/truthful_qa/task_mc.json       general-knowledge questions (Lin et
      al. 2021, Apache 2.0): out of scope.
  bigbench/benchmark_tasks/known_unknowns/task.json       unanswerable questions: out of scope.

Per route, 25 exemplars go to the routes file; the remaining items of every source (each
route, each out-of-scope source) are split in half, at random with a fixed seed, into
`calib.jsonl` (for `router fit`) and `test.jsonl` (never used for fitting or for choosing any
setting). The output is deterministic; `SOURCES.md` records the sdist's sha256 and the counts.

Run: python demo/routing/public/build.py [--sdist PATH/bigbench-1.0.0.tar.gz]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SDIST = "bigbench-1.0.0.tar.gz"
SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
TASKS = "bigbench-1.0.0/bigbench/benchmark_tasks/"
ROUTES = {  # SNIPS intent -> (route name, description)
    "add_to_playlist": ("playlists", "Add songs, artists or albums to a playlist"),
    "book_restaurant": ("restaurants", "Book a table at a restaurant"),
    "get_weather": ("weather", "Weather forecasts"),
    "rate_book": ("book_ratings", "Rate a book or other written work"),
    "search_screening_event": ("cinema", "Film showtimes and cinemas"),
}
SAME_REGISTER_OOS = ("play_music", "search_creative_work")
EXEMPLARS = 25
SEED = 23
MAX_CHARS = 300
Rows = list[dict[str, str]]


def fetch_sdist(folder: Path) -> Path:
    """Download the sdist with pip (no dependencies, nothing installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*cmd, "bigbench==1.0.0", "-d", str(folder)], check=True)
    return folder / SDIST


def read_tasks(sdist: Path) -> dict[str, Any]:
    """The task JSON files this evaluation uses, by path inside `benchmark_tasks/`."""
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{sdist}: sha256 {digest} is not the pinned {SHA256}")
    wanted = {
        "intent_recognition/task.json",
        "truthful_qa/task_mc.json",
        "known_unknowns/task.json",
        *(f"hhh_alignment/{part}/task.json" for part in ("helpful", "harmless", "honest", "other")),
    }
    out: dict[str, Any] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            name = member.name.removeprefix(TASKS)
            if name in wanted:
                handle = tar.extractfile(member)
                assert handle is not None
                out[name] = json.load(handle)
    missing = wanted - set(out)
    if missing:
        raise SystemExit(f"{sdist}: missing {sorted(missing)}")
    return out


def clean(text: str) -> str | None:
    """One line of text, or None when it is too long to be a chat request."""
    text = " ".join(text.removeprefix("Utterance:").split())
    return text if 0 < len(text) <= MAX_CHARS else None


def gather(tasks: dict[str, Any]) -> dict[str, list[str]]:
    """Texts per source: the SNIPS intents by name, then the out-of-scope sources."""
    sources: dict[str, list[str]] = {}
    for example in tasks["intent_recognition/task.json"]["examples"]:
        scores = example["target_scores"]
        intent = max(scores, key=scores.get)
        text = clean(example["input"])
        if text:
            sources.setdefault(intent, []).append(text)
    hhh = []
    for part in ("helpful", "harmless", "honest", "other"):
        for example in tasks[f"hhh_alignment/{part}/task.json"]["examples"]:
            # the request is the first paragraph; the rest is pasted material
            text = clean(example["input"].split("\n\n")[0])
            if text:
                hhh.append(text)
    sources["assistant_requests"] = hhh
    sources["general_questions"] = [
        t for e in tasks["truthful_qa/task_mc.json"]["examples"] if (t := clean(e["input"]))
    ]
    sources["unanswerable_questions"] = [
        t for e in tasks["known_unknowns/task.json"]["examples"] if (t := clean(e["input"]))
    ]
    return {name: sorted(set(texts)) for name, texts in sources.items()}


def build(
    sources: dict[str, list[str]],
) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]:
    """Routes file content, calibration rows and test rows."""
    rng = random.Random(SEED)
    seen: set[str] = set()
    routes, calib, test = [], [], []
    for name in sorted(sources):
        texts = [t for t in sources[name] if t.lower() not in seen]
        seen.update(t.lower() for t in texts)
        rng.shuffle(texts)
        if name in ROUTES:
            route, description = ROUTES[name]
            routes.append(
                {"name": route, "description": description, "utterances": texts[:EXEMPLARS]}
            )
            rest, label, kind = texts[EXEMPLARS:], route, "in_scope"
        else:
            rest, label = texts, "none"
            kind = "oos_same_register" if name in SAME_REGISTER_OOS else f"oos_{name}"
        half = len(rest) // 2
        calib += [{"text": t, "label": label, "kind": kind} for t in rest[:half]]
        test += [{"text": t, "label": label, "kind": kind} for t in rest[half:]]
    rng.shuffle(calib)
    rng.shuffle(test)
    return {"routes": routes}, calib, test


def write(routes: dict[str, Any], calib: Rows, test: Rows) -> None:
    import yaml

    header = "# Generated by demo/routing/public/build.py from bigbench==1.0.0 (see SOURCES.md).\n"
    (HERE / "routes.yaml").write_text(
        header + yaml.safe_dump(routes, sort_keys=False, allow_unicode=True, width=100),
        encoding="utf-8",
    )
    for name, rows in (("calib.jsonl", calib), ("test.jsonl", test)):
        lines = (json.dumps(r, ensure_ascii=False) for r in rows)
        (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help=f"a downloaded {SDIST} (default: pip download)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(Path(tmp))
        sources = gather(read_tasks(sdist))
    routes, calib, test = build(sources)
    write(routes, calib, test)
    for name, rows in (("calib", calib), ("test", test)):
        kinds: dict[str, int] = {}
        for row in rows:
            kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
        print(name, len(rows), dict(sorted(kinds.items())))  # noqa: T201 - a script's report


if __name__ == "__main__":
    main()
