"""Where a run's data comes from, for all four scripts: data files (--train_file, ...), or a dataset through
`datasets`: `--dataset_name` is a Hub id (read from the local
cache when offline, as `datasets` does), a folder of data files (train.json, validation.json, ...) or a folder written
by `save_to_disk`; `--dataset_config_name` and the split names choose what to read.

A split stands where a data file path stands (DatasetSplit is a str: `name[split]`), so every task reads it with its
JSON-lines reader, and every message about a row names the dataset, the split and the row (`tnews[train]:17`, rows
counted from 1). ClassLabel ids are turned into their names (labels, NER tags), so the readers see what a JSON-lines
file would hold.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import datasets

from script_utils import DataError, decoded_lines

logger = logging.getLogger(__name__)


@dataclass
class DatasetArguments:
    """The data-source arguments of the Hugging Face examples; each script's DataTrainingArguments extends them."""

    dataset_name: Optional[str] = field(
        default=None,
        metadata={"help": "A dataset instead of data files: a Hub id (e.g. clue; offline it is read from the local "
                  "cache), a folder of data files (train.json, validation.json, test.json, or .csv/.parquet), or a "
                  "folder written by Dataset(Dict).save_to_disk."},
    )
    dataset_config_name: Optional[str] = field(
        default=None, metadata={"help": "The dataset's configuration (e.g. tnews for --dataset_name clue)."}
    )
    train_split_name: str = field(default="train", metadata={"help": "The split to train on."})
    validation_split_name: str = field(default="validation", metadata={"help": "The split to evaluate on."})
    test_split_name: str = field(default="test", metadata={"help": "The split to predict on (--do_predict)."})


class DatasetSplit(str):
    """One split of a dataset, read like a JSON-lines file; as a string it is `name[split]`, as a path would be."""

    def __new__(cls, dataset, name, split):
        self = super().__new__(cls, f"{name}[{split}]")
        # A label column that is -1 throughout (no labels, e.g. CLUE's test splits) is left out: an unlabelled split.
        unlabelled = [c for c, f in dataset.features.items()
                      if isinstance(f, datasets.ClassLabel) and dataset.unique(c) == [-1]]
        self.dataset, self.dataset_name, self.split = dataset.remove_columns(unlabelled), name, split
        self.decoders = {c: class_names(f) for c, f in self.dataset.features.items() if class_names(f) is not None}
        return self

    def __reduce__(self):  # pickled (datasets' generators, worker processes) as what it is, not as a plain str
        return DatasetSplit, (self.dataset, self.dataset_name, self.split)

    def class_label_names(self, column):
        """The names of a ClassLabel column (or of a list of ClassLabels, e.g. NER tags); None for other columns."""
        return self.decoders.get(column)

    def objects(self):
        """Yield (row number from 1, {column: value}) with ClassLabel ids as names; -1 (no label, e.g. a test split)
        becomes None."""
        for i, row in enumerate(self.dataset, start=1):
            for column, names in self.decoders.items():
                value = row[column]
                if isinstance(value, list):
                    row[column] = [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in value]
                elif isinstance(value, int):
                    row[column] = names[value] if 0 <= value < len(names) else None
            yield i, row

    def fingerprint(self):
        return [self.dataset_name, self.split, self.dataset._fingerprint]


def class_names(feature):
    """ClassLabel names of a feature, or of the ClassLabel inside a list feature; else None."""
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    return None


def load_dataset_splits(data_args, wanted, hub_kwargs=None):
    """{split: DatasetSplit} for `wanted` ({"train"/"validation"/"test": required?}): an optional split the dataset
    does not have is left out; a required one, or an empty one, is an error naming the dataset, the split and the fix.
    """
    name, config_name = data_args.dataset_name, data_args.dataset_config_name
    hub_kwargs = hub_kwargs or {}
    saved = os.path.isdir(name) and any(os.path.isfile(os.path.join(name, f))
                                        for f in ("dataset_dict.json", "state.json"))
    try:
        if saved:
            loaded = datasets.load_from_disk(name)
        else:
            loaded = datasets.load_dataset(name, config_name, cache_dir=hub_kwargs.get("cache_dir"),
                                           token=hub_kwargs.get("token"))
    except (FileNotFoundError, ValueError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "corresponds to no data" in reason:  # datasets' words for a split whose data files are empty
            raise DataError(f"{name}: a split is empty ({reason}); fill its data file or remove it.") from None
        raise DataError(f"--dataset_name {name}" + (f" --dataset_config_name {config_name}" if config_name else "")
                        + f": cannot load it ({reason[:300]}). Pass a Hub id that is in the local cache (offline, "
                        f"HF_HUB_OFFLINE=1, nothing is downloaded), a folder of train/validation/test data files, "
                        f"or a folder written by save_to_disk.") from None
    if isinstance(loaded, datasets.Dataset):  # save_to_disk of a single Dataset: it is the training split
        loaded = datasets.DatasetDict({data_args.train_split_name: loaded})
    shown = os.path.basename(os.path.normpath(name)) if os.path.isdir(name) else name
    if config_name and not os.path.isdir(name):
        shown = f"{name}/{config_name}"
    split_flags = {"train": "train_split_name", "validation": "validation_split_name", "test": "test_split_name"}
    splits = {}
    for split, required in wanted.items():
        split_name = getattr(data_args, split_flags[split])
        if split_name not in loaded:
            if required:
                raise DataError(f"{name}: no split '{split_name}' (it has {sorted(loaded)}); pass "
                                f"--{split_flags[split]} with one of them.")
            logger.info(f"{name}: no split '{split_name}': no {split} data")
            continue
        if len(loaded[split_name]) == 0:
            raise DataError(f"{name}[{split_name}]: the split is empty (0 rows); fill it or pass "
                            f"--{split_flags[split]} with another of {sorted(loaded)}.")
        splits[split] = DatasetSplit(loaded[split_name], shown, split_name)
        logger.info(f"{split}: {shown}[{split_name}]: {len(loaded[split_name]):,} rows, columns "
                    f"{loaded[split_name].column_names}")
    return splits


def source_fingerprint(path):
    """What identifies a data file or split for the Arrow cache: path, size and modification time of a file; name,
    split and datasets' fingerprint of a dataset split."""
    if isinstance(path, DatasetSplit):
        return path.fingerprint()
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def class_label_names(source, column):
    """ClassLabel names of `column` in a dataset split (None for a data file or another feature)."""
    return source.class_label_names(column) if isinstance(source, DatasetSplit) else None


def json_objects(path, bad, skipped):
    """(line number, object) for each object of a JSON-lines file, or each row of a dataset split. Blank lines are
    counted in `skipped`; a line that is no JSON object goes to `bad(line_no, message)` (an error, or a skip)."""
    if isinstance(path, DatasetSplit):
        yield from path.objects()
        return
    for line_no, text in decoded_lines(path):
        if not text.strip():
            skipped["blank line"] += 1
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            bad(line_no, f"invalid JSON ({e.msg}); each line must be one JSON object")
            continue
        if not isinstance(obj, dict):
            bad(line_no, "not a JSON object; each line must be one object, e.g. {\"text\": ..., \"label\": ...}")
            continue
        yield line_no, obj


def data_files(data_args, training_args, hub_kwargs=None):
    """The data this run reads ({split: path or DatasetSplit} for train/validation/test, as --do_* ask) and the
    --max_*_samples limits per split; a --do_* without its data is an error before anything heavy happens."""
    given = [f"--{s}_file" for s in ("train", "validation", "test") if getattr(data_args, f"{s}_file", None)]
    if data_args.dataset_name:
        if given:
            raise DataError(f"--dataset_name {data_args.dataset_name} and {', '.join(given)}: pass a dataset or data "
                            f"files, not both.")
        wanted = {"train": True} if training_args.do_train else {}
        if training_args.eval_requested or (training_args.do_train and training_args.do_eval):
            wanted["validation"] = training_args.eval_requested  # evaluating while training: if the split exists
        if training_args.do_predict:
            wanted["test"] = True
        files = load_dataset_splits(data_args, wanted, hub_kwargs)
    else:
        if training_args.eval_requested and not data_args.validation_file:
            raise DataError("--do_eval needs --validation_file (or --dataset_name with a validation split).")
        files = {"train": data_args.train_file if training_args.do_train else None,
                 "validation": data_args.validation_file if training_args.do_eval else None,
                 "test": data_args.test_file if training_args.do_predict else None}
        for split, flag in (("train", "--do_train"), ("test", "--do_predict")):
            if files[split] is None and (training_args.do_train if split == "train" else training_args.do_predict):
                raise DataError(f"{flag} needs --{split}_file (or --dataset_name).")
        files = {k: v for k, v in files.items() if v}
    if not files:
        raise DataError("Nothing to do: pass --do_train/--do_eval/--do_predict with the matching data files.")
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
              "test": data_args.max_predict_samples}
    return files, limits
