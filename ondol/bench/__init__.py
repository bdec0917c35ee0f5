"""``ondol bench``: ondol against llama.cpp and transformers on the machine at hand (docs/performance.md)."""
