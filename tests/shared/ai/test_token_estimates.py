"""Prompt estimates count images at their worst case for the costliest model of the chain."""
from shared.ai.token_estimates import estimate_prompt_tokens, image_tokens

TEXT = [{"role": "user", "content": "hello there, how are you?"}]


def with_image(detail: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "hello there, how are you?"},
                                         {"type": "image_url", "image_url": {"url": "data:,", "detail": detail}}]}]


def test_an_image_costs_what_the_model_counts_at_most():
    assert image_tokens("low", "gpt-4o") == 85
    assert image_tokens("high", "gpt-4o") == image_tokens("auto", "gpt-4.1") == 85 + 8 * 170
    assert image_tokens("low", "gpt-4o-mini") == 2_833
    assert image_tokens("high", "openai/gpt-4o-mini-2024-07-18") == 2_833 + 8 * 5_667
    assert image_tokens("low", "gpt-4.1-nano") == 3_779        # patches: detail does not lower the bound


def test_the_prompt_estimate_adds_images_for_the_costliest_model_of_the_chain():
    base = estimate_prompt_tokens(TEXT)
    assert estimate_prompt_tokens(with_image("low"), ("gpt-4o",)) == base + 85
    assert estimate_prompt_tokens(with_image("low"), ("gpt-4o", "gpt-4o-mini")) == base + 2_833
    assert estimate_prompt_tokens(with_image("high")) == base + 85 + 8 * 170      # no model named: gpt-4o's rule
