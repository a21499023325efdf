#!/usr/bin/env bash
# The flagship job on real data: THUCNews news titles (10 classes, 52,494 train / 10,000 dev), a small Chinese BERT
# trained from scratch for 4 epochs on 2 CPU cores. Usage:
#   bash scripts/thucnews_from_scratch.sh ../shared/data/thucnews_titles outputs/thucnews
# The folder holds train.txt and dev.txt (title<TAB>label_id) and class.txt (label names, line i = id i).
# With a pretrained checkpoint, replace --config_name/--tokenizer_name by --model_name_or_path bert-base-chinese
# and use --learning_rate 2e-5 (the course's setting): no vocab to train, and any --pooling works.
set -euo pipefail
DATA=${1:?usage: $0 DATA_DIR [OUTPUT_DIR]}
OUT=${2:-outputs/thucnews}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# A character-level Chinese WordPiece vocab from the training titles (4,274 distinct characters -> 7.4k tokens)
# and a 4-layer, 256-wide BERT config (5.1M parameters, random weights).
python data_scripts/train_tokenizer.py --train_files $DATA/train.txt --output_dir $OUT/init \
    --vocab_size 8000 --write_config \
    --hidden_size 256 --num_hidden_layers 4 --num_attention_heads 4 --intermediate_size 1024 \
    --max_position_embeddings 128

# Mean pooling (the heads over seeds: bench/heads_comparison.py). Titles are short: --max_seq_length auto picks 32.
python run_classification.py \
    --config_name $OUT/init --tokenizer_name $OUT/init \
    --train_file $DATA/train.txt --validation_file $DATA/dev.txt --label_file $DATA/class.txt \
    --do_train --do_eval \
    --head linear --pooling mean \
    --max_seq_length auto --num_train_epochs 4 \
    --learning_rate 5e-4 --weight_decay 0.01 --per_device_train_batch_size 32 --per_device_eval_batch_size 256 \
    --bf16 --save_strategy no --logging_steps 200 \
    --output_dir $OUT/model --overwrite_output_dir
