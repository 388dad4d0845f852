"""Any OpenAI-compatible chat API (VseGPT, OpenRouter, LiteLLM, Ollama, vLLM...) as a provider.

The wire work (SSE, retries, limiter, breaker) is `services.llm.client.LLMClient`; this package
only turns provider-neutral turns into OpenAI's message shape.
"""

from services.llm.openai_compat.chat import OpenAIChat, openai_messages

__all__ = ["OpenAIChat", "openai_messages"]
