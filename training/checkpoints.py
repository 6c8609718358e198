"""The resumable training checkpoint (RUN/last_checkpoint.pth): what it holds, and loading it
back (weights_only) into the network, the heads and their optimizers, with a sentence for
every checkpoint that does not fit the flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import UserError
from core.model import describe_state_dict, load_trusted_types
from data_catalog import runs


def move_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                state[key] = value.to(device)


def checkpoint_state(
    epoch, model, model_optimizer, heads, head_optimizers, best, history, args, unreadable=None
):
    """The resumable checkpoint: tensors, dicts, lists, numbers and strings only, so that
    --resume_train can load it with weights_only=True."""
    return {
        "epoch_num": epoch,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": model_optimizer.state_dict(),
        "classifiers_state_dict": [h.state_dict() for h in heads],
        "optimizers_state_dict": [o.state_dict() for o in head_optimizers],
        "best_val_recall1": best,
        "history": history,
        "args": runs.plain_args(args),
        "unreadable_images": unreadable.files if unreadable is not None else {},
    }


RESUME_KEYS = ("epoch_num", "model_state_dict", "optimizer_state_dict", "classifiers_state_dict")


@dataclass
class Resumed:
    epoch: int
    best: float
    history: list
    unreadable: dict


def read_resumable(path, args) -> dict:
    """The training checkpoint at `path`, checked against the flags; UserError if unusable."""
    checkpoint = load_trusted_types(path)
    if isinstance(checkpoint, dict) and not all(key in checkpoint for key in RESUME_KEYS):
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            raise UserError(
                f"{path} holds only a network's weights (like best_model.pth), not a training "
                f"checkpoint; give RUN/{runs.LAST_CHECKPOINT} to --resume_train, or pass this file "
                "to --resume_model to start a new training from these weights"
            )
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in RESUME_KEYS):
        raise UserError(
            f"{path} is not a training checkpoint (it lacks {', '.join(RESUME_KEYS)}); "
            f"give the {runs.LAST_CHECKPOINT} of a run to --resume_train"
        )
    state = checkpoint["model_state_dict"]
    found = describe_state_dict(state) if isinstance(state, dict) else None
    wanted = (args.backbone, args.fc_output_dim)
    if found is None or (found.backbone, found.fc_output_dim) != wanted:
        saved = f"{found.backbone} with {found.fc_output_dim}-D" if found else "another network"
        raise UserError(
            f"{path} was trained with {saved} descriptors, these flags ask for "
            f"{args.backbone} with {args.fc_output_dim}-D; give the checkpoint's --backbone "
            "and --fc_output_dim, or start a new run"
        )
    return checkpoint


def resume(path, model, model_optimizer, heads, head_optimizers, args) -> Resumed:
    """Load a last_checkpoint.pth (weights_only) into the training objects."""
    checkpoint = read_resumable(path, args)
    sizes = [h.out_features for h in heads]
    try:
        saved = [int(s["weight"].shape[0]) for s in checkpoint["classifiers_state_dict"]]
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        raise UserError(
            f"{path} has damaged classifier heads; resume from another checkpoint"
        ) from error
    if saved != sizes:
        raise UserError(
            f"{path} was trained with classes per group {saved}, this partition has {sizes}: "
            "give the same dataset and --M --alpha --N --L --min_images_per_class --groups_num"
        )
    try:
        model.load_state_dict(checkpoint["model_state_dict"])
        model_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        for head, state in zip(heads, checkpoint["classifiers_state_dict"], strict=True):
            head.load_state_dict(state)
        optimizers = checkpoint.get("optimizers_state_dict", [])
        for optimizer, state in zip(head_optimizers, optimizers, strict=True):
            optimizer.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise UserError(
            f"{path} does not fit the network these flags describe ({first_line}); give the "
            "checkpoint's --pooling, --head and --train_all_layers"
        ) from error
    return Resumed(
        int(checkpoint["epoch_num"]),
        float(checkpoint.get("best_val_recall1", -1.0)),
        list(checkpoint.get("history", [])),
        dict(checkpoint.get("unreadable_images", {})),
    )
