"""The scorer's log-probs equal a direct per-sequence computation."""
import torch

from acqkit.round.batching import left_pad
from acqkit.round.score import response_logps, score


def direct_logp(model, prompt, response):
    """Unpadded single sequence, full logits, explicit sum over response tokens."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    total = 0.0
    for k, tok in enumerate(response):
        total += logp[len(prompt) + k - 1, tok].item()
    return total


def test_scores_match_direct_computation_with_padding(tiny):
    model, tok = tiny
    prompts = [[5, 17, 42, 8], [9, 3], [100, 200, 300, 400, 500, 600, 7]]
    responses = [[11, 12, 13], [14, 15, 16, 17, 18, 19], [20]]
    logp, ent = score(model, prompts, responses, tok.pad_token_id, batch_size=3)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        assert abs(logp[i] - direct_logp(model, p, r)) < 1e-4
    assert (ent > 0).all()


def test_prompt_tokens_do_not_count(tiny):
    model, tok = tiny
    base, _ = score(model, [[5, 6, 7]], [[8, 9]], tok.pad_token_id)
    longer_response, _ = score(model, [[5, 6]], [[7, 8, 9]], tok.pad_token_id)
    # The same token sequence split differently: the response-only sum must differ by the moved token.
    moved = direct_logp(model, [5, 6], [7])
    assert abs(longer_response[0] - (base[0] + moved)) < 1e-4


def test_batch_composition_does_not_change_scores(tiny):
    model, tok = tiny
    prompts = [[5, 17, 42, 8], [9, 3]]
    responses = [[11, 12, 13], [14, 15, 16, 17, 18, 19]]
    together, _ = score(model, prompts, responses, tok.pad_token_id, batch_size=2)
    alone = [score(model, [p], [r], tok.pad_token_id)[0][0] for p, r in zip(prompts, responses)]
    assert abs(together[0] - alone[0]) < 1e-4 and abs(together[1] - alone[1]) < 1e-4


def test_entropy_matches_definition(tiny):
    model, tok = tiny
    ids, mask, pos, resp = left_pad([[5, 6, 7]], [[8, 9]], tok.pad_token_id)
    with torch.no_grad():
        _, ent = response_logps(model, ids, mask, pos, resp, with_entropy=True)
        logits = model(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits[0, 2:4].float()
    p = torch.softmax(logits, -1)
    expected = (-(p * torch.log(p)).sum(-1)).mean().item()
    assert abs(ent.item() - expected) < 1e-4
