"""agentlog: zero-config logging for LLM agent workflows."""
