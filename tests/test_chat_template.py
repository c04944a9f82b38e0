"""Tests for chat_template.jinja: Qwen3's template extended with list (multimodal) contents."""

import copy
from pathlib import Path

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = (REPO / "chat_template.jinja").read_text()
# Qwen3's real tokenizer (and published template) lives outside the repo, in the shared assets.
ASSETS = REPO.parent / "shared/assets/qwen3-0.6b"

IMAGE = {"type": "image"}


def text(s):
    return {"type": "text", "text": s}


def render(messages, **kwargs):
    """Render with transformers' own jinja environment, from our template file alone."""
    rendered, _ = render_jinja_template(conversations=[messages], chat_template=TEMPLATE, **kwargs)
    return rendered[0]


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]

WEATHER_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}

# (name, messages, tools); text-only conversations covering every branch of Qwen3's template.
CONVERSATIONS = [
    ("single_user", [{"role": "user", "content": "Hi!"}], None),
    (
        "system_user_assistant",
        [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
        ],
        None,
    ),
    (
        "multi_turn_with_late_system",
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "system", "content": "Now be verbose."},
            {"role": "user", "content": "Tell me about cats."},
            {"role": "assistant", "content": "\nCats are small carnivorous mammals.\n"},
        ],
        None,
    ),
    (
        "reasoning_content_field",
        [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1", "reasoning_content": "old thoughts"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2", "reasoning_content": "\nnew thoughts\n"},
        ],
        None,
    ),
    (
        "think_inside_content",
        [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "<think>\nfirst\n</think>\n\nA1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "<think>\nsecond\n</think>\n\nA2"},
        ],
        None,
    ),
    (
        "empty_think_last_turn",
        [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<think>\n\n</think>\n\nA"}],
        None,
    ),
    (
        "tools_with_system",
        [{"role": "system", "content": "You are a weather bot."}, {"role": "user", "content": "Weather?"}],
        TOOLS,
    ),
    ("tools_without_system", [{"role": "user", "content": "What time is it?"}], TOOLS),
    (
        "tool_call_dict_args_function_wrapper",
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL]},
            {"role": "tool", "content": '{"temp": 21}'},
            {"role": "assistant", "content": "It is 21 degrees."},
        ],
        TOOLS,
    ),
    (
        "tool_call_string_args_no_wrapper_with_content",
        [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "<think>\nNeed the tool.\n</think>\n\nLet me check.",
                "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
            },
            {"role": "tool", "content": "sunny"},
        ],
        TOOLS,
    ),
    (
        "parallel_calls_consecutive_tool_responses",
        [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "Weather and time?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [WEATHER_CALL, {"type": "function", "function": {"name": "get_time", "arguments": {}}}],
            },
            {"role": "tool", "content": "sunny"},
            {"role": "tool", "content": "12:00"},
            {"role": "assistant", "content": "Sunny, and it is noon."},
            {"role": "user", "content": "Thanks!"},
        ],
        TOOLS,
    ),
    (
        "multi_step_tool_response_in_user_turn",
        [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "<think>\ncall it\n</think>\n\n", "tool_calls": [WEATHER_CALL]},
            {"role": "user", "content": "<tool_response>\nsunny\n</tool_response>"},
            {"role": "assistant", "content": "<think>\ngot it\n</think>\n\nSunny."},
        ],
        TOOLS,
    ),
]

# enable_thinking absent / True / False, each with and without the generation prompt.
RENDER_KWARGS = [
    {"add_generation_prompt": gen, **think}
    for think in ({}, {"enable_thinking": True}, {"enable_thinking": False})
    for gen in (False, True)
]
KWARGS_IDS = ["-".join(f"{k}={v}" for k, v in kw.items()) for kw in RENDER_KWARGS]
CONV_IDS = [c[0] for c in CONVERSATIONS]


def as_parts(messages):
    """The same conversation with every string content turned into a single text part."""
    messages = copy.deepcopy(messages)
    for message in messages:
        if isinstance(message.get("content"), str):
            message["content"] = [text(message["content"])]
    return messages


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    if not (ASSETS / "tokenizer_config.json").is_file():
        pytest.skip(f"Qwen3 assets not found at {ASSETS}; cannot compare with Qwen3's own template")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ASSETS)


@pytest.mark.parametrize("kwargs", RENDER_KWARGS, ids=KWARGS_IDS)
@pytest.mark.parametrize("name,messages,tools", CONVERSATIONS, ids=CONV_IDS)
def test_text_only_matches_qwen3(qwen3_tokenizer, name, messages, tools, kwargs):
    expected = qwen3_tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs)
    ours = qwen3_tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, chat_template=TEMPLATE, **kwargs)
    assert ours == expected


@pytest.mark.parametrize("kwargs", RENDER_KWARGS, ids=KWARGS_IDS)
@pytest.mark.parametrize("name,messages,tools", CONVERSATIONS, ids=CONV_IDS)
def test_text_parts_render_like_strings(name, messages, tools, kwargs):
    # Also exercises list contents in system/tools prompt, </think> splitting, tool responses and last-query logic.
    assert render(as_parts(messages), tools=tools, **kwargs) == render(messages, tools=tools, **kwargs)


def test_image_then_question():
    messages = [{"role": "user", "content": [IMAGE, text("What is this?")]}]
    assert render(messages) == "<|im_start|>user\n<|image_pad|>What is this?<|im_end|>\n"


def test_generation_prompt_without_thinking():
    messages = [{"role": "user", "content": [IMAGE, text("Q")]}]
    assert render(messages, add_generation_prompt=True, enable_thinking=False) == (
        "<|im_start|>user\n<|image_pad|>Q<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_training_conversation():
    messages = [
        {"role": "user", "content": [IMAGE, text("Q")]},
        {"role": "assistant", "content": [text("A")]},
    ]
    expected = "<|im_start|>user\n<|image_pad|>Q<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA<|im_end|>\n"
    assert render(messages, enable_thinking=False) == expected
    # A plain string answer renders the same.
    messages[1]["content"] = "A"
    assert render(messages, enable_thinking=False) == expected


def test_multiple_images_and_text_only_lists():
    messages = [{"role": "user", "content": [text("Compare "), IMAGE, text(" and "), IMAGE, text(".")]}]
    assert render(messages) == "<|im_start|>user\nCompare <|image_pad|> and <|image_pad|>.<|im_end|>\n"
    messages = [{"role": "user", "content": [IMAGE, IMAGE]}]
    assert render(messages) == "<|im_start|>user\n<|image_pad|><|image_pad|><|im_end|>\n"
    messages = [{"role": "user", "content": [text("Hello"), text(" world")]}]
    assert render(messages) == "<|im_start|>user\nHello world<|im_end|>\n"


def test_multi_turn_list_contents():
    messages = [
        {"role": "system", "content": [text("You describe images.")]},
        {"role": "user", "content": [IMAGE, text("What is this?")]},
        {"role": "assistant", "content": [text("<think>\nlooks like a cat\n</think>\n\nA cat.")]},
        {"role": "user", "content": [text("And this?"), IMAGE]},
    ]
    assert render(messages, add_generation_prompt=True, enable_thinking=False) == (
        "<|im_start|>system\nYou describe images.<|im_end|>\n"
        "<|im_start|>user\n<|image_pad|>What is this?<|im_end|>\n"
        # Before the last query, the reasoning is dropped, as Qwen3 does for strings.
        "<|im_start|>assistant\nA cat.<|im_end|>\n"
        "<|im_start|>user\nAnd this?<|image_pad|><|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_list_user_content_counts_as_query():
    # Without list contents counting as queries, the earlier string user turn would be the last
    # query and the first assistant turn would keep its reasoning.
    messages = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "<think>\nr1\n</think>\n\nA1"},
        {"role": "user", "content": [IMAGE, text("Q2")]},
        {"role": "assistant", "content": "<think>\nr2\n</think>\n\nA2"},
    ]
    assert render(messages) == (
        "<|im_start|>user\nQ1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\n<|image_pad|>Q2<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nr2\n</think>\n\nA2<|im_end|>\n"
    )


def test_unknown_part_type_is_an_error():
    with pytest.raises(Exception, match="Unsupported content part type: audio"):
        render([{"role": "user", "content": [{"type": "audio"}, text("Q")]}])


def render_tracked(messages, **kwargs):
    """The rendered text and the character spans of its generation blocks (what
    return_assistant_tokens_mask marks)."""
    rendered, spans = render_jinja_template(
        conversations=[messages], chat_template=TEMPLATE, return_assistant_tokens_mask=True, **kwargs
    )
    return rendered[0], spans[0]


def generated_parts(messages, **kwargs):
    rendered, spans = render_tracked(messages, **kwargs)
    return [rendered[start:end] for start, end in spans]


CONVERSATION = dict((name, (messages, tools)) for name, messages, tools in CONVERSATIONS)


@pytest.mark.parametrize("kwargs", RENDER_KWARGS, ids=KWARGS_IDS)
@pytest.mark.parametrize("name,messages,tools", CONVERSATIONS, ids=CONV_IDS)
def test_generation_blocks_are_the_assistant_turns(name, messages, tools, kwargs):
    """One block per assistant message, each ending with its <|im_end|> (so the model learns to stop)
    and directly followed by the newline the next prompt starts with; tracking changes no byte."""
    rendered, spans = render_tracked(messages, tools=tools, **kwargs)
    parts = [rendered[start:end] for start, end in spans]
    assert rendered == render(messages, tools=tools, **kwargs)
    assert len(parts) == sum(message["role"] == "assistant" for message in messages)
    assert all(part.endswith("<|im_end|>") and "<|im_start|>" not in part for part in parts)
    assert all(rendered[end:].startswith("\n") for _, end in spans)


def test_generation_blocks_hold_answers_and_shown_reasoning_only():
    messages, _ = CONVERSATION["reasoning_content_field"]
    # The first answer precedes the last query, so Qwen3 drops its reasoning; the last one shows it.
    assert generated_parts(messages) == ["A1<|im_end|>", "<think>\nnew thoughts\n</think>\n\nA2<|im_end|>"]
    # The empty think block is the thinking-off switch the generation prompt also carries: not an answer.
    messages = [{"role": "user", "content": [IMAGE, text("Q")]}, {"role": "assistant", "content": [text("A")]}]
    assert generated_parts(messages, enable_thinking=False) == ["A<|im_end|>"]


def test_generation_blocks_hold_tool_calls():
    messages, tools = CONVERSATION["tool_call_dict_args_function_wrapper"]
    assert generated_parts(messages, tools=tools) == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "It is 21 degrees.<|im_end|>",
    ]
