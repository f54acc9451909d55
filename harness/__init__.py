"""parentage: statistical evidence about an LLM's parentage (the core harness)."""
