"""`--help` of every script and command-line tool in the repo exits 0: the first command a newcomer types.

The scripts are found by globbing (every .py file with a `__main__` block at the top level, in data_scripts/, bench/
and scripts/), so a new script is covered without touching this file. A bare `%` in an argparse help text (write
`%%`) used to crash run_classification.py, run_ner.py, run_qa.py and run_mlm.py here.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = (".", "data_scripts", "bench", "scripts")


def command_line_scripts():
    found = []
    for folder in FOLDERS:
        for path in sorted((REPO / folder).glob("*.py")):
            if 'if __name__ == "__main__"' in path.read_text(encoding="utf-8"):
                found.append(path.relative_to(REPO).as_posix())
    return found


SCRIPTS = command_line_scripts()


def test_every_known_tool_is_found():
    expected = {"run_classification.py", "run_ner.py", "run_qa.py", "run_mlm.py", "predict.py", "export_onnx.py",
                "data_scripts/text_stats.py", "data_scripts/train_tokenizer.py", "bench/predict_throughput.py"}
    assert expected <= set(SCRIPTS), sorted(expected - set(SCRIPTS))


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0(script):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, script, "--help"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage:" in done.stdout, done.stdout[:500]
