"""The built-in sampler ``hf``: transformers ``generate`` in this process (acqkit.round.sample.generate).

Batched, left-padded, one random stream per (prompt id, response) (``KeyedSampling``); registered through the entry-point
group like any outside backend (a vLLM one, say), so it has no back door either.
"""
from acqkit import hookimpl
from acqkit.components import Sampler
from acqkit.round.sample import generate


class HFGenerate(Sampler):
    def generate(self, request) -> list[list[int]]:
        return generate(request.model, request.tokenizer, request.prompt_ids, request.n, request.gen, request.seed,
                        label=request.label, keys=request.keys or None)


@hookimpl
def acqkit_register_samplers(register):
    register("hf", HFGenerate)
