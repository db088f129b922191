"""``--init-from``: start a run from another checkpoint's tokenizer, encoder and, where it fits, head."""

from __future__ import annotations

from lstmtext.errors import UsageError
from lstmtext.progress import note


def copy_encoder(model, state: dict, path, meta: dict, task: str = "") -> None:
    """``--init-from``: copy the encoder (embedding included) from another checkpoint, refusing a misfit.

    A checkpoint of the same task whose head has exactly this run's shapes gives its head too: training goes on
    from the whole model on new data (an LM adapted to a task's text, ULMFiT's second step; a tagger moved to
    new data with the same tags). Otherwise the head starts fresh, except that an LM checkpoint's head also
    fills a task head's own LM (``head.lm.*``, ner.lm_weight) where the shapes match.

    A forward-only LM (lm.bidirectional=false) never trained its backward stack: that stack is left as this
    run initialised it, so the result is the same as from scratch on that half."""
    own = model.state_dict()
    source = meta.get("recipe", {})
    forward_only = meta.get("task") == "lm" and not source.get("lm", {}).get("bidirectional", True)
    copied = 0
    for k, v in state.items():
        if not k.startswith("encoder.") or (forward_only and k.startswith("encoder.bwd.")):
            continue
        if k not in own:
            raise UsageError(f"--init-from {path}: its encoder has '{k}', which this recipe's encoder lacks "
                             f"(its encoder settings: {meta.get('recipe', {}).get('encoder')})")
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
    same_head = (meta.get("task") == task and head and set(head) == own_head
                 and all(own[k].shape == v.shape for k, v in head.items()))
    if same_head:
        own.update(head)
    # a head that keeps an LM beside its task (ner.lm_weight) starts it from an LM checkpoint's head
    lm_head = {} if meta.get("task") != "lm" else {
        k: head[src] for k in own if k.startswith("head.lm.")
        if (src := "head." + k[len("head.lm."):]) in head and head[src].shape == own[k].shape
    }
    own.update(lm_head)
    model.load_state_dict(own)
    what = " and the head" if same_head else " and the LM head" if lm_head else ""
    note(f"init-from: copied {copied} encoder tensors{what} and the tokenizer from {path}"
         + (" (a forward-only LM: the backward stack starts fresh)" if forward_only else ""))
