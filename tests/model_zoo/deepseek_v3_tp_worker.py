"""One rank of the 2-way tensor-parallel test: `python deepseek_v3_tp_worker.py RANK DIR`.

DIR holds model.safetensors (the unsplit tiny model) and tokens.pt; the gloo group meets
through DIR/init. Writes DIR/rank{RANK}.pt: shard shapes and logits of a full prefill and of
a prefill plus one decoding step, for both attention paths.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from model_zoo.deepseek_v3 import RuntimeOptions, Transformer, load_checkpoint, load_config


def main(rank: int, folder: Path) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{folder / 'init'}", rank=rank, world_size=2
    )
    tokens = torch.load(folder / "tokens.pt")
    results: dict[str, object] = {}
    for attn_impl in ("absorb", "naive"):
        model = Transformer(load_config("tiny"), RuntimeOptions(torch.float32, attn_impl))
        load_checkpoint(model, folder / "model.safetensors")
        results[f"{attn_impl}/full"] = model(tokens)
        model(tokens[:, :-1])
        results[f"{attn_impl}/step"] = model(tokens[:, -1:], start_pos=tokens.size(1) - 1)
    results["shapes"] = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    torch.save(results, folder / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
