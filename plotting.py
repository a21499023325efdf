"""Matplotlib for the recipes' plots (confusion matrices, training curves, length histograms, benchmark curves):
the Agg backend (no display needed) and a font that draws Chinese.

Label names such as 体育 / 财经 need a CJK font; most Linux machines have none, and matplotlib then draws empty
boxes. The font comes with the requirements: the package noto-cjk-sans-otc ships Noto Sans CJK (SIL Open Font
License 1.1), registered here with matplotlib, so every machine that installed requirements.txt draws Chinese. A CJK
font the system already has is the fallback.
"""

import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

# Simplified Chinese first; "Noto Sans CJK JP" is the first face of the collection, which matplotlib < 3.10 reads alone
# (its Chinese characters are all there, a few drawn in the Japanese style).
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Micro Hei",
                "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "Arial Unicode MS")


def pyplot():
    """matplotlib.pyplot with the Agg backend and a CJK font first in the sans-serif list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_cjk_font()
    return plt


def packaged_cjk_font():
    """The path of the Noto Sans CJK collection installed with the requirements, or None."""
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    path = str(noto_cjk_sans_otc.FONT_PATH)
    return path if os.path.isfile(path) else None


def use_cjk_font():
    """Register the packaged CJK font with matplotlib (once) and put a CJK family first in font.sans-serif, so Chinese
    text is drawn with it (Latin letters and digits too: the font has them). Returns the family, or None (with a
    warning) when no CJK font is available."""
    import matplotlib
    from matplotlib import font_manager

    path = packaged_cjk_font()
    if path and not any(f.fname == path for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(path)
    available = {f.name for f in font_manager.fontManager.ttflist}
    family = next((name for name in CJK_FAMILIES if name in available), None)
    if family is None:
        if not getattr(use_cjk_font, "warned", False):
            logger.warning("No CJK font for the plots: Chinese text will show as boxes. Install the requirements "
                           "(pip install -r requirements.txt brings noto-cjk-sans-otc).")
            use_cjk_font.warned = True
        return None
    sans = [name for name in matplotlib.rcParams["font.sans-serif"] if name != family]
    matplotlib.rcParams["font.sans-serif"] = [family] + sans
    matplotlib.rcParams["font.family"] = ["sans-serif"]
    return family


def plot_training_curves(log_history, path, metrics=("eval_accuracy", "eval_macro_f1")):
    """training_curves.png: loss (train and eval) and the eval metrics per epoch, from trainer.state.log_history."""
    plt = pyplot()
    train = [(h["epoch"], h["loss"]) for h in log_history if "loss" in h and "epoch" in h]
    evals = [h for h in log_history if "eval_loss" in h]
    if not train and not evals:
        return False
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot(*zip(*train), label="train loss", alpha=0.8)
    if evals:
        ax_loss.plot([h["epoch"] for h in evals], [h["eval_loss"] for h in evals], "o-", label="eval loss")
        for key in metrics:
            points = [(h["epoch"], h[key]) for h in evals if key in h]
            if points:
                ax_metric.plot(*zip(*points), "o-", label=key)
        ax_metric.legend()
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title("evaluation")
    ax_loss.set_title("loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_confusion_matrix(matrix, names, path, title):
    """The confusion matrix with the label names as they are (体育, 财经, ...), counts in the cells, colour = the share
    of the true row."""
    plt = pyplot()
    n = len(names)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)  # colour = recall share of the true row
    ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if row_share[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

