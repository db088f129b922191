"""lstmtext: one SentencePiece tokenizer and one BiLSTM encoder feeding four task heads.

The package import is kept light (no torch) so that the CLI's ``--help`` stays fast;
``lstmtext.load`` imports torch when it is called.
"""

__version__ = "0.1.0"


def load(path, device: str = "cpu", int8: bool = False):
    """Load a checkpoint and return an object whose methods match its task.

    >>> model = lstmtext.load("sst2.ckpt")
    >>> model.predict(["a gorgeous, witty film"])
    [{'label': '1', 'score': 0.97, 'scores': {...}}]

    int8=True runs a sentiment or NER model's LSTMs with int8 weights on the CPU (``--precision int8``).
    """
    from lstmtext.api import load as _load
    from lstmtext.api import quantize_int8

    predictor = _load(path, device=device)
    if int8:
        quantize_int8(predictor)
    return predictor
