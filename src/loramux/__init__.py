"""loramux: many task-specific LoRA adapters over one frozen LLM, behind one OpenAI-compatible API.

Importing the package is cheap and has no side effects: engines, models and the router import
their heavy dependencies lazily, inside the modules that wrap them.
"""

__version__ = "0.1.0"
