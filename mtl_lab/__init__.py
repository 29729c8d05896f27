"""mtl-lab: a course lab reproducing multi-task BERT with SBERT, CNN-BiLSTM, SimCSE and PCGrad."""

from .model import ModelConfig, MultitaskModel, load_model
from .train import TrainConfig, profile_config, train

__all__ = ["ModelConfig", "MultitaskModel", "TrainConfig", "load_model", "profile_config", "train"]
__version__ = "0.1.0"
