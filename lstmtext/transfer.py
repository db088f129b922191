"""``--init-from``: start a run from another checkpoint's tokenizer, encoder and, where it fits, head."""

from __future__ import annotations

from lstmtext.errors import UsageError
from lstmtext.progress import note
from lstmtext.tasks import get_task


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
    copied = 0
    for k, v in state.items():
        if not k.startswith("encoder."):
            continue
        if k not in own:
            raise UsageError(
                f"--init-from {path}: its encoder has '{k}', which this recipe's encoder lacks "
                f"(its encoder settings: {meta.get('recipe', {}).get('encoder')})"
            )
        if own[k].shape != v.shape:
            raise UsageError(
                f"--init-from {path}: encoder weight '{k}' is {tuple(v.shape)} there but {tuple(own[k].shape)} "
                f"here; drop the --set that changes the encoder's shape (theirs: {meta.get('recipe', {}).get('encoder')})"
            )
        own[k] = v
        copied += 1
    if copied == 0:
        raise UsageError(f"--init-from {path}: the checkpoint has no encoder weights")
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
