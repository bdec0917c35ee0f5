"""The loss curve of a training run as a PNG (matplotlib, the ``train`` extra)."""

from __future__ import annotations

from pathlib import Path


def plot_losses(path: Path, train: list[tuple[int, float]], evals: list[tuple[int, float]], title: str) -> bool:
    """Draw train loss (raw and smoothed) and eval loss against step; False when matplotlib is
    missing, so a finished run is never lost to an optional plotting dependency."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a training box; Agg only writes files
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="train")
        # smooth over ~2% of the run: a short run keeps its shape, a long one loses its noise
        beta = max(0.0, min(0.98, 1 - 50 / len(losses)))
        ax.plot(steps, _smooth(list(losses), beta), color="tab:blue", linewidth=1.5, label="train (smoothed)")
    if evals:
        steps, losses = zip(*evals)
        ax.plot(steps, losses, "o-", color="tab:orange", linewidth=1.5, markersize=3, label="eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _smooth(values: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out
