"""The command line and the input files every script shares: bad input as one clear error line (DataError, run_main),
arguments from flags or one .json/.yaml file, logging, the data files of a run, --max_seq_length checks, and reading
text files line by line with the line number of every problem."""

import codecs
import contextlib
import dataclasses
import json
import logging
import os
import sys

import datasets
import torch
import transformers
from transformers import HfArgumentParser


class DataError(ValueError):
    """Bad input (data files or arguments); the message names the file and line (or the flag) and the fix. The scripts
    print it as one line, before any training starts (see run_main)."""


def decoded_lines(path, stream=None):
    """Yield (line_number, text) with line endings removed. Decoding line by line finds the exact bad line.

    stream: a binary stream to read instead of the file (e.g. sys.stdin.buffer); `path` then only names it in errors.
    """
    if stream is None and not os.path.isfile(path):
        raise DataError(f"{path}: file not found.")
    with open(path, "rb") if stream is None else contextlib.nullcontext(stream) as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                encoding = guess_encoding(path if stream is None else raw)
                fix = (f"iconv -f {encoding} -t UTF-8 {path} > utf8_{os.path.basename(path)}" if stream is None
                       else f"pipe it through iconv -f {encoding} -t UTF-8")
                raise DataError(f"{path}:{line_no}: not UTF-8 (looks like {encoding}); convert it first, e.g. {fix}")
            if line_no == 1:
                text = text.lstrip("\ufeff")  # a UTF-8 byte-order mark from Windows editors
            yield line_no, text.rstrip("\r\n")


def guess_encoding(path_or_bytes):
    """The likely encoding of a file (its first MiB) or of some bytes that are not UTF-8."""
    if isinstance(path_or_bytes, bytes):
        raw = path_or_bytes
    else:
        with open(path_or_bytes, "rb") as f:
            raw = f.read(1 << 20)
    for encoding in ("gb18030", "big5", "utf-16"):
        try:
            # incremental: the 1 MiB cut may split a multi-byte character
            codecs.getincrementaldecoder(encoding)().decode(raw, final=False)
            return encoding.upper()
        except UnicodeDecodeError:
            continue
    return "an unknown encoding"

def run_main(main):
    """`python run_x.py`: bad input is the user's to fix, so it ends in one clear line, no traceback."""
    try:
        main()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)



def parse_args(dataclass_types, args=None):
    """Command-line flags, or one .json/.yaml file holding them: `python run_x.py args.yaml`."""
    parser = HfArgumentParser(dataclass_types)
    args = sys.argv[1:] if args is None else list(args)
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(args[0]))
    if len(args) == 1 and args[0].endswith((".yaml", ".yml")):
        import yaml

        with open(args[0], encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        # PyYAML reads `1e-3` (no dot) as a string: turn such values into numbers for float fields.
        float_fields = {f.name for dc in parser.dataclass_types for f in dataclasses.fields(dc) if "float" in str(f.type)}
        values = {k: float(v) if k in float_fields and isinstance(v, str) else v for k, v in values.items()}
        return parser.parse_dict(values)
    return parser.parse_args_into_dataclasses(args=args)


# The recipe's own modules: their messages show like the script's.
RECIPE_MODULES = ("script_utils", "training", "checkpoints", "model_card", "plotting", "utils_classification",
                  "utils_ner", "utils_qa", "utils_mlm")


def setup_logging(logger, training_args):
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)], force=True)
    # The script's own messages at INFO on the main process; transformers/datasets at --log_level (default warning).
    log_level = training_args.get_process_log_level()
    for name in (logger.name,) + RECIPE_MODULES:
        logging.getLogger(name).setLevel(logging.INFO if training_args.should_log else log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info(f"Process rank {training_args.process_index}, device {training_args.device}, world size "
                f"{training_args.world_size}, bf16 {training_args.bf16}, fp16 {training_args.fp16}")
    if training_args.fp16 and not torch.cuda.is_available():
        logger.warning("--fp16 on a CPU is about 100x slower than fp32; on a CPU use fp32, or --bf16 where it is fast.")


def data_files(data_args, training_args):
    """The files this run reads ({split: path} for train/validation/test, as --do_* ask) and the --max_*_samples
    limits per split; a --do_* without its file is an error before anything heavy happens."""
    if training_args.eval_requested and not data_args.validation_file:
        raise DataError("--do_eval needs --validation_file.")
    files = {"train": data_args.train_file if training_args.do_train else None,
             "validation": data_args.validation_file if training_args.do_eval else None,
             "test": data_args.test_file if training_args.do_predict else None}
    for split, flag in (("train", "--do_train"), ("test", "--do_predict")):
        if files[split] is None and (training_args.do_train if split == "train" else training_args.do_predict):
            raise DataError(f"{flag} needs --{split}_file.")
    files = {k: v for k, v in files.items() if v}
    if not files:
        raise DataError("Nothing to do: pass --do_train/--do_eval/--do_predict with the matching data files.")
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
              "test": data_args.max_predict_samples}
    return files, limits


def check_max_seq_length(value, model_source, minimum, hub_kwargs=None, allow_auto=False):
    """--max_seq_length, checked when the arguments are read (before any data is read or a model loaded): a whole
    number (or 'auto' where the script takes it) from `minimum` (room for the special tokens and some text) to the
    model's max_position_embeddings (from its config). Returns the number ('auto', or None when not given)."""
    if value is None or (allow_auto and str(value) == "auto"):
        return value
    try:
        length = int(value)
    except (TypeError, ValueError):
        raise DataError(f"--max_seq_length {value}: not a whole number; pass e.g. 128"
                        + (" or auto (from the training lengths)." if allow_auto else "."))
    if length < minimum:
        raise DataError(f"--max_seq_length {length} leaves no room for text: [CLS], [SEP] and some text need at "
                        f"least {minimum} tokens; pass e.g. 128.")
    limit = None
    if model_source:
        try:
            from transformers import AutoConfig

            limit = getattr(AutoConfig.from_pretrained(model_source, **(hub_kwargs or {})), "max_position_embeddings",
                            None)
        except (OSError, ValueError):
            limit = None  # the model itself is checked (and its error reported) when the script loads it
    if limit and length > limit:
        raise DataError(f"--max_seq_length {length} exceeds the model's {limit} positions (max_position_embeddings "
                        f"of {model_source}); pass at most {limit}.")
    return length



def write_json(path, obj):
    """A results or summary file: UTF-8, Chinese as Chinese, indented."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)


# ----------------------------------------------------------------------------------------------------------------
# Encoding settings saved with a model, and windows over long inputs
# ----------------------------------------------------------------------------------------------------------------


class SavedSettings:
    """Base of the per-task encoding settings (utils_*.py: one dataclass each). A trained model keeps them in its
    config.json under CONFIG_KEY, so evaluation, prediction and predict.py later encode inputs as in training."""

    CONFIG_KEY = None

    @classmethod
    def saved_in(cls, config):
        """The settings a model's config holds ({} when none), only the keys this dataclass knows."""
        saved = getattr(config, cls.CONFIG_KEY, None) or {}
        return {f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved}

    @classmethod
    def resolve(cls, data_args, saved, logger=None, **values):
        """The settings of a run: a flag the user gave wins; then `saved` (a trained model's, when it is evaluated or
        predicts without training, so it sees inputs encoded as in training); then `values` (defaults the script
        computed); then the dataclass defaults. A boolean flag counts as given only when it is on."""
        if saved and logger is not None:
            logger.info(f"Encoding as the model was trained, unless a flag says otherwise: {saved}")
        chosen = {}
        for f in dataclasses.fields(cls):
            given = getattr(data_args, f.name, None)
            if given is None or given is False:
                given = saved.get(f.name, values.get(f.name))
            if given is not None:
                chosen[f.name] = given
        return cls(**chosen)

    def to_dict(self):
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def save_to(self, config):
        setattr(config, self.CONFIG_KEY, self.to_dict())


def window_starts(n_tokens, content, step):
    """Start offsets of windows of `content` tokens every `step` tokens, the last one flush with the end, so every
    token is covered and neighbouring windows overlap by at least content - step tokens."""
    starts = list(range(0, max(n_tokens - content, 0) + 1, step))
    if starts[-1] + content < n_tokens:
        starts.append(n_tokens - content)
    return starts
