"""Inference engines behind one protocol (`base.Engine`): transformers (`hf`) and vLLM (`vllm`)."""
