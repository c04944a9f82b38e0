"""Qwen3-SmVL (and SmolVLM2) as an lmms-eval model: the class eval_bench.py hands to lmms-eval.

    from lmms_eval.evaluator import simple_evaluate
    from qwen3_smvl.evaluation.harness_model import Qwen3SmVL
    simple_evaluate(model=Qwen3SmVL("model/freeze_llm_vlm_cocoqa"), tasks=["textvqa_val"], limit=8)

Importing this module also registers it with lmms-eval's model registry (a `ModelManifest`) as
`qwen3_smvl`, so `simple_evaluate(model="qwen3_smvl", model_args="pretrained=DIR")` works too.

Each request is answered as infer.py answers a question: the task's text after its images (in the
task's order) in one user turn, rendered by the checkpoint's own chat template with Qwen3's
thinking off (an empty think block) unless think=True. Batches are left-padded; each task's
generation settings (max_new_tokens, until, temperature, do_sample, top_p, num_beams) are honoured.
The reply reaches the task's scorer cut at the first end-of-turn token (where generation stops) and
at the first `until` string, without the prompt and without a think block. (`until` is applied to
the decoded text rather than as generate()'s stop_strings, whose per-call vocabulary scan costs
more than the few tokens it saves a model that ends its turn anyway.)
"""

import json
from collections import defaultdict

import torch
from lmms_eval.api.model import lmms
from lmms_eval.models import MODEL_REGISTRY_V2
from lmms_eval.models.registry_v2 import ModelManifest
from loguru import logger
from tqdm.auto import tqdm

from qwen3_smvl import inference
from qwen3_smvl.data import media

MODEL_NAME = "qwen3_smvl"
DEFAULT_MAX_NEW_TOKENS = 128  # tasks that set no max_new_tokens (textvqa) ask for a short answer
PASSED_SETTINGS = ("max_new_tokens", "num_beams")


class Qwen3SmVL(lmms):
    """lmms-eval's "simple" model interface (context text + doc_to_visual images) over
    AutoModelForImageTextToText + AutoProcessor, via infer.py's loading and prompt building."""

    is_simple = True

    def __init__(self, pretrained, device=None, batch_size=1, think=False, image_longest_edge=None, loaded=None,
                 **ignored):
        """loaded: an already loaded (model, processor), e.g. the model being trained, used as it is."""
        super().__init__()
        if ignored:
            logger.warning(f"{MODEL_NAME}: ignoring model_args {sorted(ignored)}")
        self.model, self.processor = loaded or inference.load_model(pretrained, device=device)
        self.pretrained = str(pretrained)
        self.batch_size = int(batch_size)
        self.think = think in (True, "True", "true", "1")
        if image_longest_edge:  # otherwise the resolution the model was trained with (its saved processor)
            self.processor.image_processor.size = {"longest_edge": int(image_longest_edge)}
        self.tokenizer = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        self.end_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self._warned = set()

    @property
    def device(self):
        return self.model.device

    def prompt(self, context, images):
        """The prompt text for a task's context with `images` (how many) before it, as infer.py renders it."""
        return inference.render_prompt(self.processor, inference.build_messages(context, image=images), think=self.think)

    def inputs(self, contexts, visuals):
        """Left-padded model inputs for a batch; each sample's images stay nested with it, in order."""
        prompts = [self.prompt(context, len(images)) for context, images in zip(contexts, visuals)]
        # RGB (most tasks convert already), handed to the processor as training hands them
        images = [[media.fit_to_processor(media.to_rgb(image), self.processor.image_processor) for image in sample]
                  for sample in visuals]
        return self.processor(text=prompts, images=images if any(images) else None, padding=True,
                              padding_side="left", return_tensors="pt").to(self.device)

    def generation_settings(self, gen_kwargs):
        """(generate() keyword arguments, until strings) from a task's generation_kwargs."""
        settings = dict(gen_kwargs)
        until = settings.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        temperature = float(settings.pop("temperature", 0) or 0)
        do_sample = str(settings.pop("do_sample", temperature > 0)).lower() == "true" and temperature > 0
        top_p = settings.pop("top_p", None)
        kwargs = {"do_sample": do_sample, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "pad_token_id": self.pad_id}
        kwargs.update({key: int(settings.pop(key)) for key in PASSED_SETTINGS if key in settings})
        if do_sample:
            kwargs.update(temperature=temperature, **({"top_p": float(top_p)} if top_p is not None else {}))
        unused = set(settings) - self._warned
        if unused:
            logger.warning(f"{MODEL_NAME}: ignoring generation settings {sorted(unused)}")
            self._warned |= unused
        return kwargs, until

    def _generate(self, inputs, generate_kwargs):
        """The token ids generate() returns for a batch: the left-padded prompts, then the new tokens."""
        with torch.inference_mode():
            return self.model.generate(**inputs, **generate_kwargs)

    def reply(self, new_tokens, until):
        """A reply as the scorer gets it: up to the first end-of-turn token, without a think block, cut
        at the first `until` string (tasks without one get lmms-eval's "\n\n", which an empty think
        block's own blank line would otherwise end)."""
        ids = new_tokens.tolist()
        end = next((i for i, token in enumerate(ids) if token in self.end_ids), len(ids))
        text = inference.split_thinking(self.tokenizer.decode(ids[:end], skip_special_tokens=True))[1]
        for stop in until:
            text = text.split(stop, 1)[0]
        return text.strip()

    def answer_batch(self, contexts, visuals, gen_kwargs):
        generate_kwargs, until = self.generation_settings(gen_kwargs)
        inputs = self.inputs(contexts, visuals)
        output = self._generate(inputs, generate_kwargs)
        prompt_length = inputs["input_ids"].shape[1]
        return [self.reply(row[prompt_length:], until) for row in output]

    def generate_until(self, requests):
        """Answers, in request order; one progress bar per task, batches of batch_size built of
        requests with the same generation settings, longest prompt first."""
        answers = [None] * len(requests)
        by_task = defaultdict(list)
        for index, request in enumerate(requests):
            by_task[request.args[4]].append(index)
        for task, indices in by_task.items():
            groups = defaultdict(list)
            for index in indices:
                groups[json.dumps(requests[index].args[1], sort_keys=True, default=str)].append(index)
            with tqdm(total=len(indices), desc=task, unit="question", disable=self.rank != 0) as progress:
                for group in groups.values():
                    group.sort(key=lambda index: -len(requests[index].args[0]))
                    for start in range(0, len(group), self.batch_size):
                        batch = group[start:start + self.batch_size]
                        contexts, visuals = [], []
                        for index in batch:
                            context, gen_kwargs, doc_to_visual, doc_id, task_name, split = requests[index].args
                            contexts.append(context)
                            visuals.append(doc_to_visual(self.task_dict[task_name][split][doc_id]) or [])
                        for index, answer in zip(batch, self.answer_batch(contexts, visuals, gen_kwargs)):
                            answers[index] = answer
                        progress.update(len(batch))
        return answers

    def loglikelihood(self, requests):
        raise NotImplementedError(f"{MODEL_NAME} answers generate_until tasks only (every task in eval_bench.py's suite)")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError(f"{MODEL_NAME} answers generate_until tasks only (every task in eval_bench.py's suite)")


MODEL_REGISTRY_V2.register_manifest(ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.Qwen3SmVL"),
                                    overwrite=True)
