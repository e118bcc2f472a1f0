"""Greedy decoding with the model's KV cache."""

import torch

from model_zoo.deepseek_v3.model import Transformer


@torch.inference_mode()
def generate(
    model: Transformer,
    prompt_tokens: list[list[int]],
    max_new_tokens: int,
    eos_id: int | None = None,
) -> list[list[int]]:
    """Greedy completions (prompt excluded) of a batch of non-empty prompts.

    The first call prefills every sequence up to the shortest prompt's length; each later call
    feeds one position per sequence, the prompt's own token where a prompt is longer, else the
    argmax of the previous logits. A completion ends after `max_new_tokens` tokens, at
    `eos_id` (kept), or where the model's max_seq_len runs out.
    """
    lengths = [len(prompt) for prompt in prompt_tokens]
    if not lengths or min(lengths) == 0:
        raise ValueError("generate needs at least one prompt and no empty prompts")
    if len(lengths) > model.args.max_batch_size or max(lengths) > model.args.max_seq_len:
        raise ValueError(
            f"{len(lengths)} prompts of up to {max(lengths)} tokens exceed the model's "
            f"max_batch_size={model.args.max_batch_size} or max_seq_len={model.args.max_seq_len}"
        )
    total = min(model.args.max_seq_len, max(lengths) + max_new_tokens)
    device = model.head.weight.device
    tokens = torch.full((len(lengths), total), -1, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompt_tokens):
        tokens[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
    is_prompt = tokens != -1
    finished = torch.zeros(len(lengths), dtype=torch.bool, device=device)
    prev_pos = 0
    for cur_pos in range(min(lengths), total):
        logits = model(tokens[:, prev_pos:cur_pos], prev_pos)  # (b, V)
        if isinstance(logits, tuple):  # with mtp: (logits, draft_logits); greedy keeps the first
            logits = logits[0]
        next_token = torch.where(is_prompt[:, cur_pos], tokens[:, cur_pos], logits.argmax(-1))
        tokens[:, cur_pos] = next_token
        if eos_id is not None:
            finished |= ~is_prompt[:, cur_pos] & (next_token == eos_id)
        prev_pos = cur_pos
        if finished.all():
            break
    completions = []
    for row, length in enumerate(lengths):
        completion = tokens[row, length : length + max_new_tokens].tolist()
        if -1 in completion:  # decoding stopped early: every sequence had ended
            completion = completion[: completion.index(-1)]
        if eos_id in completion:
            completion = completion[: completion.index(eos_id) + 1]
        completions.append(completion)
    return completions
