"""lm-eval's HellaSwag preprocessing (lm_eval/tasks/hellaswag/utils.py) for the shared JSONL rows."""

import re


def preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def process_hellaswag(dataset):  # type: ignore[no-untyped-def]
    def one(doc):  # type: ignore[no-untyped-def]
        return {
            "query": preprocess(doc["activity_label"] + ": " + doc["ctx"]),
            "choices": [preprocess(e) for e in doc["endings"]],
            "label": int(doc["label"]),
        }

    return dataset.map(one)
