"""Chinese on every plot: label names (体育, 财经) are drawn with a CJK font that has their glyphs, not replaced by
ids and not drawn as empty boxes. The font is Noto Sans CJK from the requirements (plotting.py registers it), so this
holds on a machine with no CJK font of its own.

Each figure is inspected just before it is saved: for every text with Chinese in it, the font matplotlib picks for
the text's properties (font_manager.findfont) must hold a glyph for every character.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import matplotlib  # noqa: E402
import matplotlib.figure  # noqa: E402
from matplotlib import font_manager  # noqa: E402

import plotting  # noqa: E402
import run_classification as rc  # noqa: E402
from data_scripts import text_stats  # noqa: E402
from plotting import plot_training_curves  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")
CLASS_NAMES = ["体育", "财经", "科技"]


def has_cjk(text):
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def font_of(text):
    """The font matplotlib draws this Text object with, and the characters it has no glyph for."""
    font = font_manager.get_font(font_manager.findfont(text.get_fontproperties()))
    missing = [c for c in text.get_text() if not c.isspace() and font.get_char_index(ord(c)) == 0]
    return font.family_name, missing


@pytest.fixture
def saved_figures(monkeypatch):
    """Every figure saved during the test: {"texts": all texts, "cjk": [(text, font family, missing glyphs)]}."""
    figures = []
    save = matplotlib.figure.Figure.savefig

    def inspect_then_save(fig, *args, **kwargs):
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
        figures.append({"fig_texts": [t.get_text() for t in texts],
                        "xticks": [t.get_text() for t in fig.axes[0].get_xticklabels()] if fig.axes else [],
                        "cjk": [(t.get_text(), *font_of(t)) for t in texts if has_cjk(t.get_text())]})
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", inspect_then_save)
    return figures


def assert_drawn_in_cjk(figure):
    assert figure["cjk"], figure["fig_texts"]
    for text, family, missing in figure["cjk"]:
        assert "CJK" in family or family in plotting.CJK_FAMILIES, (text, family)
        assert not missing, (text, family, missing)


def test_the_packaged_font_is_registered_and_chosen(tmp_path, saved_figures):
    plt = plotting.pyplot()
    assert plotting.packaged_cjk_font() is not None  # requirements.txt: noto-cjk-sans-otc
    assert matplotlib.rcParams["font.sans-serif"][0] == "Noto Sans CJK SC"
    fig, ax = plt.subplots()
    ax.bar(range(3), [3, 1, 2])
    ax.set_xticks(range(3), CLASS_NAMES)
    ax.set_title("类别分布 -1")
    fig.savefig(tmp_path / "bars.png")
    plt.close(fig)
    (figure,) = saved_figures
    assert figure["xticks"] == CLASS_NAMES
    assert_drawn_in_cjk(figure)
    assert {family for _, family, _ in figure["cjk"]} == {"Noto Sans CJK SC"}


def test_confusion_matrix_shows_chinese_label_names(model_dir, tmp_path, saved_figures):
    rows = h.keyword_rows(60, n_classes=3, seed=5)
    h.write_tsv(tmp_path / "train.tsv", rows[:45])
    h.write_tsv(tmp_path / "dev.tsv", rows[45:])
    h.write_label_file(tmp_path / "class.txt", CLASS_NAMES)
    out = tmp_path / "out"
    rc.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.tsv", "--validation_file",
                              tmp_path / "dev.tsv", "--label_file", tmp_path / "class.txt", "--do_train", "--do_eval",
                              "--max_steps", "2"))
    assert (out / "eval_confusion_matrix.png").stat().st_size > 0
    matrices = [f for f in saved_figures if any(t.startswith("eval: 15 texts") for t in f["fig_texts"])]
    (matrix,) = matrices
    assert matrix["xticks"] == CLASS_NAMES  # the names, not ids
    assert_drawn_in_cjk(matrix)
    report = json.loads((out / "eval_classification_report.json").read_text(encoding="utf-8"))
    assert report["labels"] == CLASS_NAMES


def test_training_curves_and_length_histogram_draw_chinese(tmp_path, saved_figures):
    history = [{"epoch": 1.0, "loss": 0.9}, {"epoch": 1.0, "eval_loss": 0.8, "eval_准确率": 0.5},
               {"epoch": 2.0, "loss": 0.5}, {"epoch": 2.0, "eval_loss": 0.6, "eval_准确率": 0.7}]
    assert plot_training_curves(history, tmp_path / "curves.png", metrics=("eval_准确率",))
    train = tmp_path / "训练集.tsv"
    train.write_text("".join(f"{'字' * n}\t{n % 2}\n" for n in range(1, 40)), encoding="utf-8")
    text_stats.main([str(train), "--plot", str(tmp_path / "lengths.png")])
    curves, histogram = saved_figures
    assert_drawn_in_cjk(curves)
    assert any("训练集.tsv" in t for t in histogram["fig_texts"])
    assert_drawn_in_cjk(histogram)
