"""Prompt templates (text or chat) rendering an item and its demonstrations, and format perturbations."""

from harness.prompts.formats import perturb, write_variants
from harness.prompts.messages import Message, Prompt, prompt_text
from harness.prompts.template import PromptTemplate, Rendered, available_prompts, load_prompt

__all__ = [
    "Message", "Prompt", "PromptTemplate", "Rendered", "available_prompts", "load_prompt", "perturb",
    "prompt_text", "write_variants",
]
