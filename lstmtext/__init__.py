"""lstmtext: one SentencePiece tokenizer and one BiLSTM encoder feeding four task heads.

The package import is kept light (no torch) so that the CLI's ``--help`` stays fast;
``lstmtext.load`` imports torch when it is called.
"""

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """Load a checkpoint and return an object whose methods match its task.

    >>> model = lstmtext.load("sst2.ckpt")
    >>> model.predict(["a gorgeous, witty film"])
    [{'label': '1', 'score': 0.97, 'scores': {...}}]
    """
    from lstmtext.api import load as _load

    return _load(path, device=device)
