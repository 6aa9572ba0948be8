"""Streaming ingredients into a live model's tensors: the one I/O path of every soup method.

A soup is written in place into `target`, the tensors of one live model (for instance
`dict(model.state_dict())`, whose tensors share storage with the model), so candidate weights are scored in
that same model. Ingredients stream their tensors one at a time, grouped into chunks of about 64 MiB, so the
extra memory is bounded by one chunk, never by the number of ingredients.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ...errors import IncompatibleIngredientsError
from .base import SoupIngredient

__all__ = ["TargetLayout", "load_into"]

# Tensors are streamed in groups of about this many bytes, so each group is averaged with one fused foreach
# op; the extra memory this costs is bounded by the group, never by the number of ingredients.
_CHUNK_BYTES = 64 * 2**20


class TargetLayout:
    """Which tensors of the target a soup writes, and the streaming of an ingredient's tensors into them.

    Tied weights (target names sharing one tensor) are handled once, under the first name, whichever of the
    names the ingredient's files use.
    """

    def __init__(self, target: dict[str, torch.Tensor]):
        self.target = target
        self.canonical: dict[str, str] = {}
        first: dict[tuple, str] = {}
        for name, tensor in target.items():
            storage = tensor.untyped_storage().data_ptr()
            key = (storage, tensor.storage_offset(), tensor.shape, tensor.stride(), tensor.dtype)
            self.canonical[name] = first.setdefault(key, name)
        self.names = list(first.values())
        self.floats = [name for name in self.names if target[name].is_floating_point()]

    def fp32_soup(self, *, reuse_target: bool) -> dict[str, torch.Tensor]:
        """Zeroed fp32 accumulators next to the target's tensors; with `reuse_target`, fp32 ones serve as such."""
        soup = {}
        for name in self.floats:
            held = self.target[name]
            soup[name] = (
                held
                if reuse_target and held.dtype == torch.float32
                else torch.empty_like(held, dtype=torch.float32)
            )
        for tensor in soup.values():
            tensor.zero_()
        return soup

    def write(self, soup: dict[str, torch.Tensor]) -> None:
        """Copy the soup into the target, cast to the target's dtypes."""
        for name, tensor in soup.items():
            if tensor is not self.target[name]:
                self.target[name].copy_(tensor)

    def stream(
        self, ingredient: SoupIngredient, *, copy_others: bool
    ) -> Iterator[tuple[list[str], list[torch.Tensor]]]:
        """The ingredient's floating-point tensors in groups of about `_CHUNK_BYTES`, as (names, tensors).

        Each group's target tensors are on one device, as the fused foreach ops want.

        With `copy_others`, its other tensors (integer buffers) are copied into the target on the way.

        Raises:
            IncompatibleIngredientsError: if a tensor's shape differs from the target's or one is missing.
        """
        seen: set[str] = set()
        names: list[str] = []
        values: list[torch.Tensor] = []
        size = 0
        for file_name, tensor in ingredient.tensors():
            name = self.canonical.get(file_name)
            if name is None or name in seen:
                continue
            seen.add(name)
            held = self.target[name]
            if tensor.shape != held.shape:
                raise IncompatibleIngredientsError(
                    f"Ingredient {ingredient.name!r} has {file_name!r} of shape {tuple(tensor.shape)} but the "
                    f"model expects {tuple(held.shape)}; soup only fine-tunes of the same architecture."
                )
            if not held.is_floating_point():
                if copy_others:
                    held.copy_(tensor)
                continue
            if names and held.device != self.target[names[0]].device:
                yield names, values
                names, values, size = [], [], 0
            names.append(name)
            values.append(tensor)
            size += tensor.nbytes
            if size >= _CHUNK_BYTES:
                yield names, values
                names, values, size = [], [], 0
        if names:
            yield names, values
        if len(seen) < len(self.names):
            missing = [name for name in self.names if name not in seen]
            raise IncompatibleIngredientsError(
                f"Ingredient {ingredient.name!r} lacks {len(missing)} tensor(s) the model holds "
                f"(first: {missing[:3]}); soup only fine-tunes of the same architecture."
            )


@torch.no_grad()
def load_into(target: dict[str, torch.Tensor], ingredient: SoupIngredient) -> None:
    """Write one ingredient's weights into the target, in place and cast to the target's dtypes.

    The pipeline uses it to score each ingredient in turn in the same model.

    Args:
        target: the live model's tensors, e.g. `dict(model.state_dict())`.
        ingredient: the ingredient whose weights to load.

    Raises:
        IncompatibleIngredientsError: if the ingredient misses a tensor of the target or has another shape.

    Example:
        ```python
        >>> target = dict(model.state_dict())
        >>> for ingredient in ingredients:
        ...     load_into(target, ingredient)
        ...     scores.append(score())
        ```
    """
    layout = TargetLayout(target)
    for names, values in layout.stream(ingredient, copy_others=True):
        for name, value in zip(names, values, strict=True):
            target[name].copy_(value)
