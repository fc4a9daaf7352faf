"""How long ``--task hf:ORG/NAME`` takes to load a 60k-prompt dataset, offline, from the hub cache.

The dataset is built here, in a temporary directory, shaped like UltraFeedback
(``prompt``, ``prompt_id``, ``chosen`` and ``rejected`` chat lists holding long
answers, two scores), and written the way ``hf download`` leaves it in the hub
cache. Then the task is built three times, each in the same process:

* first load: ``datasets`` converts the Parquet files into its Arrow cache (once per dataset);
* cached load: the Arrow cache is memory-mapped; only the prompt and id columns
  (and the scalar extras) become Python objects, the answers are never read;
* cached load with ``limit=1000``: the first 1000 rows only.

Run on demand: ``python benchmarks/dataset_load.py`` (``--rows`` to change the size).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
WORDS = ("the a good film story kind warm bright helpful answer question careful clear short long river "
         "music garden winter quiet happy ocean light simple reason example because often never always").split()


def build_dataset(root: Path, rows: int) -> Path:
    """A hub cache holding ``acqkit-bench/prompts`` (one split, ``train``, in Parquet shards)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)  # random words: the answers compress no better than real text

    repo = root / "hub" / "datasets--acqkit-bench--prompts"
    data = repo / "snapshots" / COMMIT / "data"
    data.mkdir(parents=True)
    shard = 20_000
    for k, start in enumerate(range(0, rows, shard)):
        n = min(shard, rows - start)
        ids = range(start, start + n)
        text = lambda length: " ".join(rng.choice(WORDS, length))  # noqa: E731
        prompts = [f"Question {i}: {text(30)}?" for i in ids]
        answer = lambda i: [{"role": "user", "content": prompts[i - start]},  # noqa: E731
                            {"role": "assistant", "content": text(300)}]
        table = pa.table({"prompt": prompts, "prompt_id": [f"id{i}" for i in ids],
                          "chosen": [answer(i) for i in ids], "rejected": [answer(i) for i in ids],
                          "score_chosen": [float(i % 10) for i in ids], "score_rejected": [float(i % 7) for i in ids]})
        pq.write_table(table, data / f"train-{k:05d}-of-{(rows + shard - 1) // shard:05d}.parquet")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # before datasets and huggingface_hub are imported: they read these once
        os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_CACHE=str(root / "hub"),
                          HF_HOME=str(root / "home"))
        os.environ.pop("HF_DATASETS_CACHE", None)
        repo = build_dataset(root, args.rows)
        size = sum(f.stat().st_size for f in repo.rglob("*.parquet"))
        import datasets

        from acqkit.plugins import registry

        print(f"machine: {platform.platform()}, {os.cpu_count()} cores, python {sys.version.split()[0]}, "
              f"datasets {datasets.__version__}, loadavg {os.getloadavg()[0]:.2f}")
        print(f"dataset: {args.rows} rows, Parquet {size / 2**20:.0f} MiB (prompt ~200 chars; chosen/rejected "
              f"~2 KB answers each); peak RSS after imports {_rss():.0f} MiB")
        spec = "hf:acqkit-bench/prompts(id=prompt_id)"
        for label, s in (("first load (builds the Arrow cache)", spec), ("cached load", spec),
                         ("cached load, limit=1000", spec.replace(")", ", limit=1000)"))):
            start = time.perf_counter()
            task = registry().build("task", s)
            took = time.perf_counter() - start
            n = len(task.train_prompts()) + len(task.eval_prompts())
            print(f"{label:40s} {took:6.2f} s  {n} prompts  (peak RSS so far {_rss():.0f} MiB)")
        print(f"extras of one prompt: {dict(task.train_prompts()[0].extras)}")
        # for scale, what the task avoids: every column of the cached dataset as Python objects
        start = time.perf_counter()
        rows = datasets.load_dataset(str(repo / "snapshots" / COMMIT), split="train").to_list()
        print(f"{'all columns to Python (not done by hf)':40s} {time.perf_counter() - start:6.2f} s  {len(rows)} rows"
              f"  (peak RSS so far {_rss():.0f} MiB)")


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
