"""PEFT LoRA supervised fine-tuning with options against forgetting (replay, distillation, L2)."""

from loramux.adapters.training.sft import TrainSummary, train

__all__ = ["TrainSummary", "train"]
