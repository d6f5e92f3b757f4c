"""The HTTP gateway: FastAPI app factory, OpenAI wire models, routes and error mapping.

`from loramux.api import create_app` does not import torch, PEFT or vLLM.
"""

from loramux.api.app import create_app

__all__ = ["create_app"]
