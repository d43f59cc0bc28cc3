"""vLLM in-process (``vllm:``): the engine pool, its options, and the backend on top of them."""
