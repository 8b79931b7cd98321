"""Reporting: the model-beside-baselines table, a JSON file and a Recall@K plot (PNG)."""

from __future__ import annotations

import json
import os
from typing import Dict, Mapping, Optional

TABLE_METRICS = ("recall", "ndcg", "hit_rate", "coverage")


def format_table(metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]) -> str:
    """The model beside each baseline, one row per metric (recall per pair, others per user)."""
    names = ["model"] + list(baselines)
    columns = [metrics] + [baselines[b] for b in baselines]
    keys = [k for k in metrics if k.split("@")[0] in TABLE_METRICS] + ["mrr"]
    width = max(12, *(len(n) + 2 for n in names))
    lines = [f"{'metric':<16}" + "".join(f"{n:>{width}}" for n in names)]
    for key in keys:
        lines.append(f"{key:<16}" + "".join(f"{c.get(key, float('nan')):>{width}.4f}"
                                            for c in columns))
    lines.append(f"held-out pairs: {int(metrics['num_pairs'])}, users: {int(metrics['num_users'])}")
    return "\n".join(lines)


def recall_curve(metrics: Mapping[str, float], prefix: str = "recall@") -> Dict[int, float]:
    return dict(sorted((int(k[len(prefix):]), v) for k, v in metrics.items()
                       if k.startswith(prefix)))


def write_report(
    output_dir: str,
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    extra: Optional[dict] = None,
) -> Dict[str, str]:
    """Writes `evaluation.json` and `recall_at_k.png` into `output_dir`; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, "evaluation.json")
    with open(json_path, "w") as f:
        json.dump({"model": dict(metrics), "baselines": {k: dict(v) for k, v in baselines.items()},
                   **(extra or {})}, f, indent=2, sort_keys=True)
    png_path = os.path.join(output_dir, "recall_at_k.png")
    plot_recall_curves(png_path, {"model": metrics, **baselines}, title=(extra or {}).get("title"))
    return {"json": json_path, "png": png_path}


def plot_recall_curves(path: str, runs: Mapping[str, Mapping[str, float]], title=None) -> None:
    """Recall@K against K (log axis) for each run; a file a person can look at."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, metrics in runs.items():
        curve = recall_curve(metrics)
        ax.plot(list(curve), list(curve.values()), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("K (items retrieved, full catalogue)")
    ax.set_ylabel("Recall@K (held-out pairs)")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title or "Held-out Recall@K")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
