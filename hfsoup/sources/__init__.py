"""Where weights come from: local folders, folders inside packages and Hub repositories; and pushing to the Hub.

This subpackage is the one place that fetches models from the network (through `huggingface_hub`, which
honours `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE`), and every failure becomes a one-line
`hfsoup.errors` exception.
"""

from .local import LocalSource
from .push import check_pushable, push_folder
from .reference import is_repo_reference, package_folder, parse_reference
from .safetensors import TensorInfo, read_tensor_infos, select_weight_files
from .source import IngredientSource, model_folder, open_source

__all__ = [
    "IngredientSource",
    "LocalSource",
    "TensorInfo",
    "check_pushable",
    "is_repo_reference",
    "model_folder",
    "open_source",
    "package_folder",
    "parse_reference",
    "push_folder",
    "read_tensor_infos",
    "select_weight_files",
]
