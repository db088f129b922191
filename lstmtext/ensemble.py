"""Several trained models of one recipe as one model: a prediction ensemble (``lstmtext ensemble``).

Unlike ``lstmtext average`` (one model, the mean of the weights of runs that share their start), an ensemble
keeps every member and combines what they predict, so its members may come from any start, any seed: it costs
one forward pass per member at prediction time. The file is an ordinary checkpoint whose weights are the
members' under ``members.I.``, its meta ``"ensemble": {"members": N, "parts": [...]}``; ``api.load`` builds
the members and hands them to the task's ``ensemble``, so evaluate, predict, tag and ``benchmark speed`` run it
as any model. What no single set of weights means (explain, inspect, export, ``--init-from``, ``average``) is
refused in one line by ``check_single``.

How predictions combine is the task's (its ``ensemble``): a classifier's class probabilities are averaged; a
tagger's CRF scores are (emissions and transitions alike), so its Viterbi path is the one whose summed score
over the members is highest, the product of the members' sequence distributions.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lstmtext import checkpoint as ckpt
from lstmtext.errors import UsageError

PREFIX = "members"


def members(meta: dict, path) -> int:
    """How many models a checkpoint's meta says it holds (0 for a single model)."""
    if "ensemble" not in meta:
        return 0
    n = meta["ensemble"].get("members") if isinstance(meta["ensemble"], dict) else None
    if type(n) is not int or n < 2:
        raise UsageError(f"checkpoint {path}: its 'ensemble' must name its members, a whole number ≥ 2")
    return n


def check_single(path, meta: dict, what: str) -> None:
    """Refuse an ensemble where one model's weights are needed (``what`` names the command)."""
    n = members(meta, path)
    if n:
        raise UsageError(
            f"{what}: {path} is an ensemble of {n} models, not one model's weights; pass one of its members "
            f"(lstmtext info {path} lists them)"
        )


class Ensemble(nn.Module):
    """The members in a ModuleList (state names ``members.I.…``); ``forward`` runs each and ``combine``s."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(models)

    @property
    def encoder(self):
        raise UsageError(f"this ensemble has {len(self.members)} models; explain or inspect one of its members")

    @property
    def head(self):
        return self.encoder  # the same refusal: attention weights and attributions are one model's

    def forward(self, batch: dict):
        return self.combine([m(batch) for m in self.members], batch)

    def combine(self, outs: list, batch: dict):
        raise NotImplementedError


class ClassifyEnsemble(Ensemble):
    """The mean of the members' class probabilities; its logits are their log, so softmax gives the mean."""

    def combine(self, outs: list, batch: dict):
        log_p = torch.stack([logits.float().log_softmax(-1) for logits, _ in outs])  # (M, B, L)
        logits = torch.logsumexp(log_p, dim=0) - math.log(len(outs))  # (B, L)
        labels = batch.get("labels")
        return logits, F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None


class TagEnsemble(Ensemble):
    """The mean of the members' CRF scores: emissions (B, W, L) and the transition, start and end scores. The
    loss is that mean CRF's NLL of the gold tags, the ensemble's own."""

    @property
    def head(self):
        return self  # tasks/ner.py decodes through ``model.head.decode``

    def mean_crf(self):
        from copy import deepcopy

        crf = deepcopy(self.members[0].head.crf)  # a few (L, L) tensors; the label masks come with it
        with torch.no_grad():
            for name, p in crf.named_parameters():
                p.copy_(torch.stack([m.head.crf.get_parameter(name) for m in self.members]).mean(0))
        return crf

    def decode(self, emissions: torch.Tensor, word_lengths: torch.Tensor) -> torch.Tensor:
        return self.members[0].head.decode(emissions, word_lengths, crf=self.mean_crf())

    def combine(self, outs: list, batch: dict):
        em = torch.stack([e.float() for e, _ in outs]).mean(0)  # (B, W, L)
        tags = batch.get("tags")
        if tags is None:
            return em, None
        head = self.members[0].head
        from lstmtext.encoder import lengths_to_mask

        mask = lengths_to_mask(batch["word_lengths"].to(em.device), em.size(1))  # (B, W)
        tags = head.to_bioes(tags.to(em.device), mask) if head.bioes else tags.to(em.device)
        return em, self.mean_crf().nll(em, tags, mask)


def state_names(shapes: dict[str, tuple[int, ...]], n: int) -> dict[str, tuple[int, ...]]:
    """An ensemble's weight names and shapes from one member's."""
    return {f"{PREFIX}.{i}.{k}": s for i in range(n) for k, s in shapes.items()}


def write(
    paths: list[str | Path], output: str | Path, force: bool = False, train: dict | None = None, metrics=None
) -> dict:
    """Write the checkpoints at ``paths`` as one ensemble checkpoint at ``output`` and return its meta. The
    members share task, labels, tokenizer and the recipe's [encoder] and task sections (the weights' shapes and
    how they are read); their training may differ in anything else. The ensemble's recipe is the first
    member's, its [train] updated by ``train``; ``metrics``, its dev scores where they were measured."""
    import time

    from lstmtext import __version__
    from lstmtext.data import sha256_file
    from lstmtext.tasks import get_task

    output = ckpt.check_combined_output("ensemble", paths, output, force, "ensemble.ckpt")
    first, state, parts, seconds = None, {}, [], 0.0
    for i, path in enumerate(paths):
        meta, weights = ckpt.load(path)
        if meta.get("kind") == "resume":
            raise UsageError(f"{path} is resume state, not a model; pass the checkpoint written beside it")
        check_single(path, meta, "lstmtext ensemble")
        if first is None:
            first = meta
            get_task(meta["task"]).ensemble([])  # a task whose predictions do not combine refuses here
        task = first["task"]
        for what in ("task", "labels", "tokenizer"):
            if meta.get(what) != first.get(what):
                raise UsageError(f"{path}: its {what} differs from {paths[0]}'s; an ensemble's members share it")
        for section in ("encoder", task):
            if meta["recipe"].get(section) != first["recipe"].get(section):
                raise UsageError(
                    f"{path}: its recipe's [{section}] differs from {paths[0]}'s; an ensemble's members share it"
                )
        state.update({f"{PREFIX}.{i}.{k}": v for k, v in weights.items()})
        prov = meta.get("provenance") or {}
        seconds += prov.get("train_seconds") or 0
        parts.append(
            {
                "path": str(path),
                "sha256": sha256_file(path),
                "metrics": meta.get("metrics") or {},
                **{k: prov[k] for k in ("seed", "init_from") if k in prov},  # the stages are in provenance
            }
        )
    out = {k: v for k, v in first.items() if k not in ("format", "format_version", "tokenizer", "provenance")}
    out["metrics"] = metrics or {}  # unknown until it is evaluated; each member's are in its part
    if train:
        out["recipe"] = {**out["recipe"], "train": {**out["recipe"].get("train", {}), **train}}
    out["ensemble"] = {"members": len(paths), "parts": parts}
    shared = ("data", "seed", "init_from", "lineage", "device", "precision")  # the first member's; all share stages
    out["provenance"] = {
        **{k: v for k, v in (first.get("provenance") or {}).items() if k in shared},
        "train_seconds": round(seconds, 1),  # the members' together: what the ensemble cost to train
        "lstmtext": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    ckpt.save(output, state, out, ckpt.tokenizer_proto(first))
    return out
