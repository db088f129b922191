"""``--init-from``: start a run from another checkpoint's tokenizer, encoder and, where it fits, head."""

from __future__ import annotations

from lstmtext.errors import UsageError
from lstmtext.progress import note
from lstmtext.tasks import get_task


def check_fits(mod, recipe, vocab_size: int, labels: list[str], state: dict, path, meta: dict) -> None:
    """Refuse an --init-from checkpoint whose encoder does not fit ``recipe``'s before this run's model is built:
    the shapes come from a model built without storage, so a file claiming a huge encoder costs nothing."""
    from lstmtext.api import model_shapes

    state, _ = get_task(meta.get("task", "")).trained_weights(state, meta)
    check_encoder_fits(model_shapes(mod, recipe, vocab_size, labels), state, path, meta)


def check_encoder_fits(own: dict, state: dict, path, meta: dict) -> list[str]:
    """The names of ``state``'s encoder weights, each checked to exist in ``own`` (name → shape) with its shape."""
    names = []
    theirs = meta.get("recipe", {}).get("encoder")
    for k, v in state.items():
        if not k.startswith("encoder."):
            continue
        if k not in own:
            raise UsageError(
                f"--init-from {path}: its encoder has '{k}', which this recipe's encoder lacks "
                f"(its encoder settings: {theirs})"
            )
        if own[k] != tuple(v.shape):
            raise UsageError(
                f"--init-from {path}: encoder weight '{k}' is {tuple(v.shape)} there but {own[k]} here; "
                f"drop the --set that changes the encoder's shape, or the file's recipe is wrong (theirs: {theirs})"
            )
        names.append(k)
    if not names:
        raise UsageError(f"--init-from {path}: the checkpoint has no encoder weights")
    return names


def copy_encoder(model, state: dict, path, meta: dict, task: str) -> None:
    """``--init-from``: copy the encoder (embedding included) from another checkpoint into ``model``, a fresh
    model of ``task``, refusing a misfit.

    The source checkpoint's task says which of its weights its training touched (``trained_weights``); only
    those are copied. A checkpoint of the same task whose head has exactly this run's shapes gives its head too:
    training goes on from the whole model on new data (an LM adapted to a task's text, ULMFiT's second step; a
    tagger moved to new data with the same tags). Otherwise the head starts fresh, except for what this run's
    task takes from the checkpoint itself (its ``init_from``)."""
    own = model.state_dict()
    state, left_out = get_task(meta.get("task", "")).trained_weights(state, meta)
    encoder = check_encoder_fits({k: tuple(v.shape) for k, v in own.items()}, state, path, meta)
    for k in encoder:
        own[k] = state[k]
    copied = len(encoder)
    head = {k: v for k, v in state.items() if k.startswith("head.")}
    own_head = {k for k in own if k.startswith("head.")}
    same_head = (
        meta.get("task") == task
        and head
        and set(head) == own_head
        and all(own[k].shape == v.shape for k, v in head.items())
    )
    if same_head:
        own.update(head)
    taken = "the head" if same_head else get_task(task).init_from(own, state, meta)
    model.load_state_dict(own)
    note(
        f"init-from: copied {copied} encoder tensors{' and ' + taken if taken else ''} and the tokenizer from {path}"
        + (f" ({left_out})" if left_out else "")
    )
