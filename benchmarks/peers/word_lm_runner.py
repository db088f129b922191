"""Runs word_language_model's main.py unchanged (with the peer venv's python), so a budget shorter than an epoch
still gives it a model to score.

    python word_lm_runner.py PEER_DIR/main.py [main.py's arguments]

main.py saves its model only at the end of an epoch whose validation loss improved, and on Ctrl-C its own
handler loads that file and scores the test text. When Ctrl-C comes before the first epoch has ended there is
no file, and main.py would fail: then this runner saves the model as it stands (torch.save(model), main.py's
own format) before letting main.py's handler run, and says so on stdout, with the epoch and batch it stopped
at. Nothing else changes.
"""

import os
import runpy
import signal
import sys


def on_budget(signum, frame):
    import torch

    f, batch = frame, None
    while f is not None and not ("args" in f.f_globals and "model" in f.f_globals and "corpus" in f.f_globals):
        f = f.f_back
    g = f.f_globals if f is not None else {}
    while f is not None and f.f_code.co_name != "train":
        f = f.f_back
    if f is not None:
        batch = f.f_locals.get("batch")
    print(f"runner: Ctrl-C in epoch {g.get('epoch')} at batch {batch}", flush=True)
    if g and not os.path.exists(g["args"].save):
        with open(g["args"].save, "wb") as out:
            torch.save(g["model"], out)
        print("runner: budget reached before an epoch ended; the current model saved for the test", flush=True)
    raise KeyboardInterrupt


if __name__ == "__main__":
    main = os.path.abspath(sys.argv[1])
    sys.argv = [main, *sys.argv[2:]]
    sys.path.insert(0, os.path.dirname(main))
    signal.signal(signal.SIGINT, on_budget)
    runpy.run_path(main, run_name="__main__")
