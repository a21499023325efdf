"""Hub-ready output directories: after training, run_classification.py and run_mlm.py leave a folder that IS the Hub
repository (weights, config with label names and auto_map, head code, tokenizer, README.md model card), --push_to_hub
uploads exactly that folder with our card, and a fresh process with only transformers (no repo on sys.path) loads it,
gives the same logits and runs the card's usage snippets."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import torch  # noqa: E402

import run_classification as rc  # noqa: E402
import run_mlm  # noqa: E402
import model_card  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")
CLASS_NAMES = ["体育", "财经"]
TEXTS = ["的一是甲在不了", "有和人乙这中大为上个国我以要他", "时来"]


def card_of(out):
    return (Path(out) / "README.md").read_text(encoding="utf-8")


def python_blocks(card):
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model_dir):
    """A plain-head and a custom-head classifier (data in a folder named like a dataset), and a pretrained MLM."""
    root = tmp_path_factory.mktemp("cards")
    data = root / "toy_news"
    rows = h.keyword_rows(120, n_classes=2, seed=2)
    h.write_tsv(data / "train.txt", rows[:80])
    h.write_tsv(data / "dev.txt", rows[80:104])
    h.write_tsv(data / "test.txt", rows[104:])
    h.write_label_file(data / "class.txt", CLASS_NAMES)
    common = ["--train_file", data / "train.txt", "--validation_file", data / "dev.txt", "--test_file",
              data / "test.txt", "--label_file", data / "class.txt", "--do_train", "--do_eval", "--do_predict"]
    plain = rc.main(h.tiny_train_args(model_dir, root / "plain", *common, learning_rate="5e-3"))
    custom = rc.main(h.tiny_train_args(model_dir, root / "custom", *common, "--head", "cnn", "--cnn_num_filters", "8",
                                       "--dataset_name", "my_corpus", learning_rate="5e-3"))
    h.write_lines(root / "corpus.txt", [h.filler_text(20 + i % 9, seed=i) for i in range(64)])
    mlm = run_mlm.main(h.tiny_train_args(model_dir, root / "mlm", "--train_file", root / "corpus.txt",
                                         "--validation_split_percentage", "10", "--do_train", "--do_eval",
                                         "--line_by_line", "--max_seq_length", "32", "--max_steps", "3"))
    return {"root": root, "plain": plain, "custom": custom, "mlm": mlm}


@pytest.mark.parametrize("name", ["plain", "custom"])
def test_output_dir_is_a_complete_repository(runs, name):
    out = runs["root"] / name
    files = set(os.listdir(out))
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["id2label"] == {"0": "体育", "1": "财经"} and config["label2id"] == {"体育": 0, "财经": 1}
    assert "text_classification" in config
    if name == "custom":
        assert {"modeling_heads.py", "configuration_heads.py"} <= files
        assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_heads.")
    else:
        assert "auto_map" not in config and not {f for f in files if f.endswith(".py")}


def test_classification_card(runs):
    card = card_of(runs["root"] / "plain")
    front = card.split("---")[1]
    assert "pipeline_tag: text-classification" in front and "library_name: transformers" in front
    assert "datasets:\n- toy_news" in front  # from the data folder's name
    assert "custom_code" not in front and "trust_remote_code" not in card
    assert "on **toy_news**" in card and "Labels (2): `体育`, `财经`" in card
    results = json.loads((runs["root"] / "plain" / "eval_results.json").read_text())
    assert f"| accuracy | {results['eval_accuracy']:.4f} |" in card
    assert f"| macro_f1 | {results['eval_macro_f1']:.4f} |" in card
    assert "| learning rate | 0.005 |" in card and "| total train batch size | 16 |" in card
    assert "| max seq length | 128 |" in card and "| truncation strategy | head |" in card
    assert len(python_blocks(card)) == 2 and "train.txt" in card

    custom = card_of(runs["root"] / "custom")
    assert "datasets:\n- my_corpus" in custom and "- custom_code" in custom  # --dataset_name wins
    assert all("trust_remote_code=True" in block for block in python_blocks(custom))
    assert "modeling_heads.py" in custom


def test_mlm_card(runs):
    card = card_of(runs["root"] / "mlm")
    assert "pipeline_tag: fill-mask" in card and "## Results" in card and "| perplexity |" in card
    (snippet,) = python_blocks(card)
    assert 'pipeline("fill-mask"' in snippet and "[MASK]" in snippet


@pytest.mark.parametrize("paths, expected", [
    (["data/thucnews/train.txt", "data/thucnews/dev.txt"], "thucnews"),
    (["/x/afqmc_train.jsonl"], "afqmc"),
    (["corpus/people-daily.dev.txt"], "people-daily"),
    (["cluener/train.json"], "cluener"),
    ([], None),
])
def test_dataset_name_from_files(paths, expected):
    assert model_card.dataset_name_from_files(paths) == expected


FRESH = textwrap.dedent("""
    import importlib.util, io, json, sys, contextlib
    assert importlib.util.find_spec("heads") is None and importlib.util.find_spec("script_utils") is None
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    root, texts = sys.argv[1], json.loads(sys.argv[2])
    logits = {}
    for name, remote in (("plain", False), ("custom", True)):
        tokenizer = AutoTokenizer.from_pretrained(f"{root}/{name}")
        model = AutoModelForSequenceClassification.from_pretrained(f"{root}/{name}", trust_remote_code=remote).eval()
        with torch.no_grad():
            logits[name] = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        logits[name + "_module"] = type(model).__module__
    torch.save(logits, f"{root}/fresh_logits.pt")
    printed = {}
    for name in ("plain", "custom", "mlm"):
        card = open(f"{root}/{name}/README.md", encoding="utf-8").read()
        blocks = card.split("```python\\n")[1:]
        printed[name] = []
        for block in blocks:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(block.split("```")[0], {})
            printed[name].append(out.getvalue())
    json.dump(printed, open(f"{root}/snippets.json", "w"), ensure_ascii=False)
""")


@pytest.fixture(scope="module")
def fresh(runs):
    root = runs["root"]
    (root / "fresh.py").write_text(FRESH)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(root / "hf_modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(root / "fresh.py"), str(root), json.dumps(TEXTS)], cwd=str(root),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:]
    return torch.load(root / "fresh_logits.pt"), json.loads((root / "snippets.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["plain", "custom"])
def test_fresh_process_gives_the_same_logits(runs, fresh, name):
    trainer = runs[name]
    tokenizer, model = trainer.processing_class, trainer.model.eval()
    with torch.no_grad():
        expected = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(fresh[0][name], expected, atol=1e-6, rtol=1e-6)
    module = fresh[0][name + "_module"]
    assert module.startswith("transformers_modules.") if name == "custom" else module.startswith("transformers.models")


def test_usage_snippets_run_in_a_fresh_process(fresh):
    printed = fresh[1]
    pipeline_out, auto_out = printed["plain"]
    assert "'label': '体育'" in pipeline_out and "'label': '财经'" in pipeline_out  # top_k=None: every label
    assert auto_out.startswith("[('") and ("体育" in auto_out or "财经" in auto_out)
    assert len(printed["custom"]) == 2 and all(printed["custom"])
    (fill,) = printed["mlm"]
    assert "'token_str'" in fill and "'score'" in fill


class FakeHub:
    """transformers.trainer.hf_api() stand-in: records the repo creation and the uploads (nothing leaves the
    machine), and what README.md said at upload time."""

    def __init__(self):
        self.created, self.uploads = [], []

    def __call__(self):
        return self

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        self.created.append({"repo_id": repo_id, "private": private})
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, commit_message=None, ignore_patterns=None, **kwargs):
        readme = Path(folder_path) / "README.md"
        self.uploads.append({"repo_id": repo_id, "folder": folder_path, "message": commit_message,
                             "files": sorted(os.listdir(folder_path)), "ignore": ignore_patterns,
                             "readme": readme.read_text(encoding="utf-8") if readme.exists() else None})


def test_push_to_hub_uploads_the_complete_folder_with_our_card(model_dir, tmp_path, monkeypatch):
    import transformers.trainer

    hub = FakeHub()
    monkeypatch.setattr(transformers.trainer, "hf_api", hub)
    rows = h.keyword_rows(40, n_classes=2, seed=5)
    h.write_tsv(tmp_path / "train.tsv", rows[:32])
    h.write_tsv(tmp_path / "dev.tsv", rows[32:])
    out = tmp_path / "out"
    rc.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.tsv", "--validation_file",
                              tmp_path / "dev.tsv", "--do_train", "--do_eval", "--head", "attention",
                              "--push_to_hub", "--hub_model_id", "someone/tiny-news", "--hub_private_repo", "true"))
    assert hub.created == [{"repo_id": "someone/tiny-news", "private": True}]
    final = hub.uploads[-1]
    assert final["repo_id"] == "someone/tiny-news" and final["folder"] == str(out)
    assert final["message"] == "End of training" and "checkpoint-*" in final["ignore"]
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
            "modeling_heads.py", "configuration_heads.py", "eval_results.json"} <= set(final["files"])
    assert final["readme"] == card_of(out)  # our card, not the Trainer's auto-generated one
    assert '"someone/tiny-news"' in final["readme"] and "## Results" in final["readme"]
