#!/usr/bin/env python
"""Time per training step: replaced-token detection (pretraining_electra.py) vs masked LM (utils_mlm.py's
SparseBertForMaskedLM), same discriminator/encoder shape, same batch.

RTD does more per step (a generator pass, sampling, a second embedding pass, a per-token head); its claim is that it
learns more per step. This measures the price. Steps alternate between the two models, so a load change on a shared
machine hits both; the CPU time of the process (one thread) is reported next to the wall time.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/rtd_step_time.py            # 4 x 256, vocab 16k, 128 x 64
    python bench/rtd_step_time.py --generator_size_divisor 2 --steps 10 --output /tmp/rtd.json
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import machine_facts  # noqa: E402
from pretraining_electra import BertForReplacedTokenDetection, ReplacedTokenDetectionConfig  # noqa: E402
from utils_mlm import SparseBertForMaskedLM  # noqa: E402

SPECIALS = 5  # ids 0..4: [PAD] [UNK] [CLS] [SEP] [MASK]
CLS, SEP, MASK = 2, 3, 4


def batch(args, generator):
    """Full blocks ([CLS] ... [SEP], no padding); 15% of the text tokens chosen, all set to [MASK] (ELECTRA)."""
    ids = torch.randint(SPECIALS, args.vocab_size, (args.batch_size, args.seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = CLS, SEP
    chosen = torch.rand(ids.shape, generator=generator) < 0.15
    chosen[:, 0] = chosen[:, -1] = False
    return {"input_ids": torch.where(chosen, MASK, ids), "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids), "labels": torch.where(chosen, ids, -100)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_hidden_layers", type=int, default=4)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--num_attention_heads", type=int, default=4)
    parser.add_argument("--intermediate_size", type=int, default=1024)
    parser.add_argument("--vocab_size", type=int, default=16000)
    parser.add_argument("--generator_size_divisor", type=int, default=4,
                        help="Generator width, heads and feed-forward width = the discriminator's / this.")
    parser.add_argument("--generator_num_layers", type=int, default=None, help="Default: the discriminator's.")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seq_len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12, help="Timed steps per model (after 2 warm-up steps each).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                         "rtd_step_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = ReplacedTokenDetectionConfig(
        vocab_size=args.vocab_size, hidden_size=args.hidden_size, num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads, intermediate_size=args.intermediate_size,
        max_position_embeddings=max(512, args.seq_len), generator_size_divisor=args.generator_size_divisor,
        generator_num_layers=args.generator_num_layers)
    torch.manual_seed(0)
    models = {"rtd": BertForReplacedTokenDetection(config),
              "mlm": SparseBertForMaskedLM(config.discriminator_config())}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    parameters = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    data = torch.Generator().manual_seed(0)
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for step in range(args.steps + 2):
        inputs = batch(args, data)
        for name, model in models.items():  # alternate: both models see the same load
            model.train()
            w, c = time.perf_counter(), time.process_time()
            loss = model(**inputs).loss
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if step >= 2:
                wall[name].append(time.perf_counter() - w)
                cpu[name].append(time.process_time() - c)
        print(f"step {step}: " + ", ".join(f"{n} {wall[n][-1]:.2f}s" for n in models if wall[n]), flush=True)

    result = {
        "shape": vars(args) | {"masked_share": 0.15},
        "parameters": parameters,
        "median_wall_s": {n: statistics.median(v) for n, v in wall.items()},
        "median_cpu_s": {n: statistics.median(v) for n, v in cpu.items()},
        "wall_s": wall, "cpu_s": cpu,
    }
    result["ratio_wall"] = result["median_wall_s"]["rtd"] / result["median_wall_s"]["mlm"]
    result["ratio_cpu"] = result["median_cpu_s"]["rtd"] / result["median_cpu_s"]["mlm"]
    result["machine"] = machine_facts()
    result["load_average_at_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"median step: RTD {result['median_wall_s']['rtd']:.2f}s, MLM {result['median_wall_s']['mlm']:.2f}s wall "
          f"(ratio {result['ratio_wall']:.2f}); CPU time ratio {result['ratio_cpu']:.2f}; "
          f"parameters RTD {parameters['rtd']:,}, MLM {parameters['mlm']:,}. -> {args.output}")


if __name__ == "__main__":
    main()
