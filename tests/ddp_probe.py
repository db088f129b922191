"""``torchrun ... tests/ddp_probe.py OUT lstmtext-args...`` runs ``lstmtext ARGS`` on each rank as ``-m lstmtext``
does, and records for tests/test_train.py what the library keeps to itself: the example indices of every
batch the rank trains on (with the batches one process would train on in the same epoch), its optimizer's
class and precision, and the rank's weights when training ends, in OUT/rankR.json and OUT/rankR.safetensors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from safetensors.torch import save_file

from lstmtext.cli.app import main
from lstmtext.training.distributed import Dist
from lstmtext.training.loop import Loop

OUT = Path(sys.argv.pop(1))
RANK = int(os.environ["RANK"])
seen: dict = {"steps": [], "one_process": {}}
_step, _fit = Loop.step, Loop.fit


def step(self, batches, progress):
    epoch = self.state.epoch
    seen["steps"].append([epoch, batches[self.state.pos].tolist()])
    if str(epoch) not in seen["one_process"]:  # the same epoch's batches for a world of one
        alone = SimpleNamespace(
            tc=self.tc, d=Dist(), lengths=self.lengths, mod=self.mod, run=self.run, feats=self.feats
        )
        seen["one_process"][str(epoch)] = [b.tolist() for b in Loop.epoch_batches(alone, epoch)]
    return _step(self, batches, progress)


def fit(self, show_progress):
    stop = _fit(self, show_progress)
    seen["lengths"] = list(map(int, self.lengths))
    seen["optimizer"] = type(self.run.opt).__name__  # DenseSparseAdamW under train.sparse_embeddings
    seen["precision"] = self.run.precision
    weights = {k: v.detach().cpu().contiguous() for k, v in self.run.raw_model.state_dict().items()}
    save_file(weights, str(OUT / f"rank{RANK}.safetensors"))
    (OUT / f"rank{RANK}.json").write_text(json.dumps(seen))
    return stop


Loop.step, Loop.fit = step, fit
if os.environ.get("DDP_PROBE_FASTEST"):  # train.precision fastest: rank 0's timing says fp32, rank 1's would say bf16
    from lstmtext.training import precision

    precision.native_bf16 = lambda: True
    precision.time_model = lambda *a: {"fp32": [1.0], "bf16": [2.0 if RANK == 0 else 0.5]}
main()
