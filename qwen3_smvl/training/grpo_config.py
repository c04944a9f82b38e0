"""Stage grpo's keys and their checks: TRL's GRPOConfig plus the project's reward keys. Apart from grpo.py so that
train_config can parse and check a grpo config without importing the trainer (which imports train_config)."""

from dataclasses import dataclass, field

from trl import GRPOConfig

from qwen3_smvl.training import ConfigError, rewards


@dataclass
class GRPOArguments(GRPOConfig):
    rewards: list[str] = field(default_factory=lambda: ["correctness", "format"], metadata={"help": "stage grpo's reward functions, summed with `reward_weights` (same order): `correctness` (the final answer after the think block against the row's last assistant turn, normalised as evaluation does), `format` (one `<think>` block with reasoning in it, then an answer), or your own `module:function` (see [Preference and RL](preference-and-rl.md#writing-a-reward))"})
    answer_tolerance: float = field(default=0.01, metadata={"help": "stage grpo: a numeric answer within this relative distance of a numeric reference counts as correct (0: exact)"})


# TRL's keys a GRPO recipe sets most; the configuration reference lists them with TRL's help texts.
TRL_KEYS = ("num_generations", "max_completion_length", "temperature", "beta", "num_iterations", "reward_weights",
            "loss_type", "scale_rewards", "chat_template_kwargs", "generation_batch_size", "log_completions", "log_multimodal",
            "use_vllm", "vllm_mode", "vllm_model_impl", "vllm_gpu_memory_utilization")


def check_keys(data_args, run_args, training_args):
    """What stage grpo refuses before anything loads: packing (GRPO builds its own batches), rewards that
    name no function, weights that do not match them (video rows under use_vllm are refused once the data
    is read: grpo.train)."""
    if data_args.packing:
        raise ConfigError("packing does not apply to stage grpo: GRPOTrainer batches prompts and their completions itself")
    try:
        functions = rewards.reward_functions(training_args.rewards, training_args.answer_tolerance)
    except rewards.RewardError as error:
        raise ConfigError(str(error))
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(functions):
        raise ConfigError(f"reward_weights has {len(weights)} value(s) for {len(functions)} rewards {training_args.rewards}")
    if training_args.answer_tolerance < 0:
        raise ConfigError(f"answer_tolerance: {training_args.answer_tolerance} must not be negative")
    if training_args.log_multimodal and training_args.world_size > 1:
        raise ConfigError("log_multimodal: true hangs a multi-process run when one rank draws only text-only prompts "
                          "(TRL 1.16 gathers the logged images on the ranks that have some); set it to false")
    ignored = set(training_args.chat_template_kwargs or {}) - {"enable_thinking"}
    if ignored and not training_args.use_vllm:  # prompts are built as inference builds them: thinking on or off
        raise ConfigError(f"chat_template_kwargs: stage grpo renders prompts as infer.py does and reads only "
                          f"enable_thinking; {sorted(ignored)} would be ignored")
    if training_args.use_vllm and training_args.vllm_model_impl != "transformers":
        raise ConfigError("use_vllm: vLLM knows Idefics3/SmolVLM but not this graft's Qwen3 text model; set "
                          "vllm_model_impl: transformers (vLLM then runs the model through transformers' code)")
